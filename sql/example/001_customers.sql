-- Example PHI schema: the HIPAA basics pg-audit-shipper promises, on one `customers` table.
-- Installed by `pg-audit-shipper init --example`; the demo and the tests use it. Copy the
-- patterns, not the table.
--
-- * Column encryption with pgcrypto: the application passes the key as a bind parameter on every
--   call (pgp_sym_encrypt($1, $2) / pgp_sym_decrypt(email, $2)). The key is never stored in the
--   database, never in a default, never in a function body. Keep pgaudit.log_parameter off so
--   bind parameters (the key) never reach the server log.
-- * Row-level security keyed on app.customer_id: a session sees only its customer's row.
-- * Least privilege: phi_app may use customers and nothing in the audit schema.
-- * Encryption at rest: PostgreSQL has no encrypted tablespaces; put the data directory and WAL on
--   an encrypted volume (LUKS/dm-crypt, cloud-provider disk encryption). See the README.

CREATE EXTENSION IF NOT EXISTS pgcrypto;

DO $roles$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'phi_app') THEN
    CREATE ROLE phi_app NOLOGIN;  -- the application; grant it to the login role your pool uses
  END IF;
END
$roles$;

CREATE TABLE IF NOT EXISTS public.customers (
  id              integer PRIMARY KEY,
  full_name       text NOT NULL,
  email_encrypted bytea,  -- pgp_sym_encrypt(email, key-from-the-application)
  created_at      timestamptz NOT NULL DEFAULT now()
);

REVOKE ALL ON public.customers FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.customers TO phi_app;

ALTER TABLE public.customers ENABLE ROW LEVEL SECURITY;
-- FORCE: the owner is filtered too; only superusers and BYPASSRLS roles see every row.
ALTER TABLE public.customers FORCE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS customer_isolation ON public.customers;
CREATE POLICY customer_isolation ON public.customers
  USING (id = nullif(current_setting('app.customer_id', true), '')::integer)
  WITH CHECK (id = nullif(current_setting('app.customer_id', true), '')::integer);

SELECT audit.protect('public.customers');
