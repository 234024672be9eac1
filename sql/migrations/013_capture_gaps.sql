-- Version 13: what `init` could not do, when it ran as a managed platform's admin role instead of a
-- superuser (src/capture/adapt.ts): each gap with what goes unprotected while it is open, what to
-- ask for, and the statements a later `init` by a superuser runs to close it. `doctor` reports them.

CREATE TABLE IF NOT EXISTS audit.capture_gaps (
  gap         text PRIMARY KEY,
  consequence text NOT NULL,
  remedy      text NOT NULL,
  repair      text NOT NULL,
  noted_at    timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE audit.capture_gaps OWNER TO audit_owner;
REVOKE ALL ON audit.capture_gaps FROM PUBLIC;
GRANT SELECT ON audit.capture_gaps TO audit_shipper, audit_ingester;
