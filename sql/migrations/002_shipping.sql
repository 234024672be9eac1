-- pg-audit-shipper, version 2: what `ship` streams from and reports to.

-- The publication carries audit_log alone. UPDATE/DELETE/TRUNCATE are published too: they must
-- never happen, and when they do the shipper records them in the chain as tamper attempts.
DO $pub$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_publication WHERE pubname = 'audit_log_publication') THEN
    CREATE PUBLICATION audit_log_publication FOR TABLE audit.audit_log;
  END IF;
END
$pub$;
-- A tampering UPDATE or DELETE then shows the whole old row, not only its id.
ALTER TABLE audit.audit_log REPLICA IDENTITY FULL;

-- The shipper's last stored head, per slot: the verifier compares it with the archive, and the
-- shipper refuses to start when the archive is behind it (newest digests gone).
CREATE TABLE IF NOT EXISTS audit.shipper_head (
  slot_name      text PRIMARY KEY,
  file_seq       bigint NOT NULL,
  record_seq     bigint NOT NULL,
  chain          text NOT NULL,
  digest_sha256  text NOT NULL,
  last_lsn       pg_lsn,
  updated_at     timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE audit.shipper_head OWNER TO audit_owner;
REVOKE ALL ON audit.shipper_head FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE ON audit.shipper_head TO audit_shipper;
