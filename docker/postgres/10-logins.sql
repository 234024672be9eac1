-- Logins for the stack's services. `pg-audit-shipper init` (the init service) creates the audit
-- schema and its NOLOGIN roles; the init service then makes these logins members of them.
-- Passwords are for a laptop: set your own everywhere else.
CREATE ROLE clinic_app LOGIN PASSWORD 'clinic_app';               -- the application's pool
CREATE ROLE shipper    LOGIN REPLICATION PASSWORD 'shipper';      -- ship: streams audit_log
CREATE ROLE ingester   LOGIN PASSWORD 'ingester';                 -- ingest: pgaudit reads into audit_log
