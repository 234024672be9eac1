import { availableParallelism } from 'node:os';
import { Option, type Command } from 'commander';
import { z } from 'zod';
import { parseBytes, parseDuration } from './duration.js';
import { ConfigError } from './errors.js';
import { parseExpectedHead } from './seal/digest.js';

/**
 * Every setting is declared once, here: flag, environment variable, default, type and description.
 * Commands build their options (`settingOption`) and their schema (`settingsSchema`) from it;
 * commander resolves flag > env > default, zod checks the result once at start, and a failure names
 * the flag, its variable and the fix in one line (`validate`). Arguments that belong to one command
 * only (query's filters, retention's range) stay with that command.
 */
export interface SettingSpec {
  flag: string;
  env?: string;
  description: string;
  /** shown in the error line as "e.g. --flag <example>" */
  example?: string;
  /** the value's name in --help; ending in "..." the flag can be repeated (the variable: comma-separated); none: a switch */
  value?: string;
  default?: string;
  choices?: readonly string[];
  hidden?: boolean;
  /** what the command receives: parses the flag's or variable's text (or the switch's true) */
  type: z.ZodType;
}

// ---- value types: messages say what is taken and what was given, never the flag (validate names it) ----

const YES = new Set(['true', '1', 'yes', 'on']);
const NO = new Set(['false', '0', 'no', 'off']);

/** A yes/no setting from the command line (a bare flag) or the environment (its text); unset is no. */
export const yesNo = z
  .union([z.boolean(), z.string()])
  .optional()
  .transform((v, ctx) => {
    if (v === undefined || typeof v === 'boolean') return v === true;
    const t = v.trim().toLowerCase();
    if (YES.has(t)) return true;
    if (NO.has(t)) return false;
    ctx.addIssue({ code: 'custom', message: `takes true or false (or 1/0, yes/no, on/off), not ${JSON.stringify(v)}` });
    return z.NEVER;
  });

/** A switch without a variable (--drain, --json): given or not. */
const switchFlag = z
  .boolean()
  .optional()
  .transform((v) => v === true);

export const postgresUrl = z.string().refine((v) => {
  try {
    const u = new URL(v);
    return u.protocol === 'postgres:' || u.protocol === 'postgresql:';
  } catch {
    return false;
  }
}, 'must be a postgresql:// URL');

/** A whole number, as given on the command line or in the environment (not a parser's "expected int, received NaN"). */
export function wholeNumber(min: number, max?: number) {
  const range = max === undefined ? `of at least ${min}` : `from ${min} to ${max}`;
  return z.union([z.string(), z.number()]).transform((v, ctx) => {
    const n = typeof v === 'number' ? v : /^\s*[+-]?\d+\s*$/.test(v) ? Number(v) : NaN;
    if (!Number.isSafeInteger(n) || n < min || (max !== undefined && n > max)) {
      ctx.addIssue({ code: 'custom', message: `takes a whole number ${range}, not ${JSON.stringify(String(v))}` });
      return z.NEVER;
    }
    return n;
  });
}

/**
 * Worker threads: `cores` or a whole number from 0 to 64. `cores` is one per core the process may
 * use, at most 8: Node counts a container's CPU limit only in newer versions and never its request,
 * so on a large node a pod could otherwise start dozens of workers of ~110 MiB each.
 */
const workerCount = z.union([z.string(), z.number()]).transform((v, ctx) => {
  if (v === 'cores') return Math.min(availableParallelism(), 8);
  const n = typeof v === 'number' ? v : /^\s*\d+\s*$/.test(v) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n) || n > 64) {
    ctx.addIssue({ code: 'custom', message: `takes "cores" or a whole number from 0 to 64, not ${JSON.stringify(String(v))}` });
    return z.NEVER;
  }
  return n;
});

/** A duration (500ms, 5s, 10m, 1h) as milliseconds, at least minMs. */
export const durationMs = (minMs = 1) =>
  z.string().transform((v, ctx) => {
    const ms = parseDuration(v);
    if (ms === null || ms <= 0) {
      ctx.addIssue({ code: 'custom', message: `takes a duration such as 500ms, 5s, 10m, 1h, not ${JSON.stringify(v)}` });
      return z.NEVER;
    }
    if (ms < minMs) {
      ctx.addIssue({ code: 'custom', message: `must be at least ${minMs / 1000}s, not ${v}` });
      return z.NEVER;
    }
    return ms;
  });

/** A size (512KiB, 8MiB, 1GiB) as bytes. */
export const byteSize = () =>
  z.string().transform((v, ctx) => {
    const b = parseBytes(v);
    if (b === null || b <= 0) {
      ctx.addIssue({ code: 'custom', message: `takes a size such as 8MiB, not ${JSON.stringify(v)}` });
      return z.NEVER;
    }
    return b;
  });

/** A digest reference as a report's "Head:" line prints it (SEQ:SHA256). */
const headRef = z.string().transform((v, ctx) => {
  const h = parseExpectedHead(v);
  if (h === null) {
    ctx.addIssue({ code: 'custom', message: `takes SEQ:SHA256 as a report's "Head:" line prints it, not ${JSON.stringify(v)}` });
    return z.NEVER;
  }
  return h;
});

/** --shard I/N: this run checks shard I (from 0) of N. */
const shardRef = z.string().transform((v, ctx) => {
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(v);
  const index = m ? Number(m[1]) : NaN;
  const count = m ? Number(m[2]) : NaN;
  if (!m || count < 1 || count > 10_000 || index >= count) {
    ctx.addIssue({
      code: 'custom',
      message: `takes I/N, shard I (0 to N-1) of N shards (an Indexed Job passes $JOB_COMPLETION_INDEX as I), not ${JSON.stringify(v)}`,
    });
    return z.NEVER;
  }
  return { index, count };
});

/** --through: a file sequence, `hour` (digests sealed before this hour began, UTC), or a time. */
const throughRef = z.string().transform((v, ctx): { seq: number } | { sealedBefore: string } => {
  const t = v.trim();
  if (/^\d+$/.test(t) && Number(t) >= 1) return { seq: Number(t) };
  if (t === 'hour') {
    const now = new Date();
    now.setUTCMinutes(0, 0, 0);
    return { sealedBefore: now.toISOString() };
  }
  const ms = /^\d{4}-\d{2}-\d{2}T/.test(t) ? Date.parse(t) : NaN;
  if (Number.isNaN(ms)) {
    ctx.addIssue({ code: 'custom', message: `takes a file sequence, "hour", or a time such as 2026-12-07T05:00:00Z, not ${JSON.stringify(v)}` });
    return z.NEVER;
  }
  return { sealedBefore: new Date(ms).toISOString() };
});

/** host:port to listen on; an IPv6 host in brackets ([::1]:8080). */
const listenAddress = z.string().transform((v, ctx) => {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(v.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) {
    ctx.addIssue({ code: 'custom', message: `takes host:port such as 127.0.0.1:8080 or [::1]:8080, not ${JSON.stringify(v)}` });
    return z.NEVER;
  }
  const host = (m[1] ?? m[2])!;
  return { host, port, loopback: host === 'localhost' || host === '::1' || /^127\./.test(host) };
});

/** One or more files: the flag repeated, or the variable's comma-separated list. */
const fileList = z
  .union([z.array(z.string()), z.string()])
  .optional()
  .transform((v) => (Array.isArray(v) ? v : v ? v.split(',') : []).map((f) => f.trim()).filter(Boolean));

// ---- the settings ---------------------------------------------------------------------------------

export const SETTINGS = {
  databaseUrl: {
    flag: '--database-url',
    env: 'DATABASE_URL',
    value: 'url',
    description: 'PostgreSQL connection URL',
    example: 'postgresql://user@db.example/app?sslmode=verify-full',
    type: postgresUrl,
  },
  archive: {
    flag: '--archive',
    env: 'AUDIT_ARCHIVE',
    value: 'url',
    description: 'the archive of sealed files: file:///path, s3://bucket/prefix, or (ship) firehose://stream',
    example: 'file:///var/lib/audit-archive',
    type: z.string().min(1),
  },
  signingKey: {
    flag: '--signing-key',
    env: 'AUDIT_SIGNING_KEY',
    value: 'pem',
    description: 'Ed25519 private key (PEM file) that signs digests',
    example: '/etc/pg-audit-shipper/signing-key.pem',
    type: z.string().min(1),
  },
  verifyKey: {
    flag: '--verify-key',
    env: 'AUDIT_VERIFY_KEY',
    value: 'pem...',
    description: 'Ed25519 public key(s) (PEM files) the digests are signed with; repeat the flag for rotated keys (the variable takes a comma-separated list)',
    example: '/etc/pg-audit-shipper/verify-key.pem',
    type: fileList,
  },
  slot: {
    flag: '--slot',
    env: 'AUDIT_SLOT',
    value: 'name',
    default: 'pg_audit_shipper',
    description: "the shipper's replication slot (ship creates it if missing; one shipper, one slot, one archive)",
    example: 'pg_audit_shipper',
    type: z.string().regex(/^[a-z0-9_]{1,63}$/, 'slot names are lower-case letters, digits and _ (at most 63)'),
  },
  statementMaxLength: {
    flag: '--statement-max-length',
    env: 'AUDIT_STATEMENT_MAX_LENGTH',
    value: 'chars',
    default: '2000',
    description: 'longest statement text kept per pgaudit event (the rest is cut while the log is read)',
    example: '2000',
    type: wholeNumber(16, 1_000_000),
  },
  logSource: {
    flag: '--log-source',
    env: 'PGAUDIT_LOG_SOURCE',
    value: 'dir|sql|rds|cloud-logging|pubsub',
    default: 'dir',
    description:
      "where ingest reads pgaudit's lines: dir (the directory --log-dir, on the database host), sql (through its own connection: audit.read_log(), log files of log_directory only), rds (the RDS API: --rds-instance), cloud-logging (Cloud SQL / AlloyDB's Data Access audit log: --gcp-project, --gcp-instance) or pubsub (the same entries through a log sink to Pub/Sub, for busy instances: --pubsub-subscription, --gcp-project, --gcp-instance)",
    type: z.enum(['dir', 'sql', 'rds', 'cloud-logging', 'pubsub']),
  },
  gcpProject: {
    flag: '--gcp-project',
    env: 'GOOGLE_CLOUD_PROJECT',
    value: 'id',
    description: "with --log-source cloud-logging or pubsub: the Google Cloud project whose Data Access audit log holds the instance's pgaudit entries",
    type: z.string().min(1).optional(),
  },
  gcpInstance: {
    flag: '--gcp-instance',
    env: 'AUDIT_GCP_INSTANCE',
    value: 'id',
    description: 'with --log-source cloud-logging or pubsub: the Cloud SQL or AlloyDB instance id (without the project)',
    type: z.string().min(1).optional(),
  },
  cloudLoggingLag: {
    flag: '--cloud-logging-lag',
    env: 'AUDIT_CLOUD_LOGGING_LAG',
    value: 'duration',
    default: '2m',
    description:
      'with --log-source cloud-logging: how long after its timestamp an entry is read (Cloud Logging makes entries readable with a delay; an entry later than this is missed)',
    type: durationMs(1000),
  },
  cloudLoggingFrom: {
    flag: '--cloud-logging-from',
    env: 'AUDIT_CLOUD_LOGGING_FROM',
    value: 'time',
    description:
      "with --log-source cloud-logging: where the first run starts, when nothing is saved yet (an ISO 8601 time; default: now): earlier entries the project's log bucket still keeps are read too",
    type: z
      .string()
      .refine((v) => /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/.test(v) && Number.isFinite(Date.parse(v)), {
        message: 'takes an ISO 8601 time, e.g. 2026-12-01T00:00:00Z',
      })
      .transform((v) => Date.parse(v))
      .optional(),
  },
  cloudLoggingEndpoint: {
    flag: '--cloud-logging-endpoint',
    env: 'AUDIT_CLOUD_LOGGING_ENDPOINT',
    value: 'url',
    default: 'https://logging.googleapis.com',
    description: 'with --log-source cloud-logging: the Cloud Logging API endpoint (a Private Service Connect endpoint, for example)',
    type: z.string().url(),
  },
  pubsubSubscription: {
    flag: '--pubsub-subscription',
    env: 'AUDIT_PUBSUB_SUBSCRIPTION',
    value: 'name',
    description:
      'with --log-source pubsub: projects/<project>/subscriptions/<name>, the subscription (of the topic a log sink publishes the pgaudit entries to) this ingester alone pulls from',
    type: z.string().min(1).optional(),
  },
  pubsubChunkWait: {
    flag: '--pubsub-chunk-wait',
    env: 'AUDIT_PUBSUB_CHUNK_WAIT',
    value: 'duration',
    default: '2m',
    description:
      "with --log-source pubsub: how long after its first chunk was published a long statement's other chunks are waited for (Pub/Sub keeps no order); then it is stored as far as it came, the rest recorded as missing",
    type: durationMs(1000),
  },
  pubsubRetention: {
    flag: '--pubsub-retention',
    env: 'AUDIT_PUBSUB_RETENTION',
    value: 'duration',
    default: '7d',
    description:
      "with --log-source pubsub: the subscription's message retention (gcloud pubsub subscriptions describe); not pulling for longer than this is recorded as possibly lost entries",
    type: durationMs(60_000),
  },
  pubsubEndpoint: {
    flag: '--pubsub-endpoint',
    env: 'AUDIT_PUBSUB_ENDPOINT',
    value: 'url',
    default: 'https://pubsub.googleapis.com',
    description: 'with --log-source pubsub: the Pub/Sub API endpoint (a regional or Private Service Connect endpoint, for example)',
    type: z.string().url(),
  },
  rdsInstance: {
    flag: '--rds-instance',
    env: 'AUDIT_RDS_INSTANCE',
    value: 'id',
    description:
      'with --log-source rds: the DB instance whose log files are read, or several separated by commas, the writer first (Aurora: each reader writes its own log, with the reads made on it); the AWS SDK finds region and credentials as usual',
    type: z.string().min(1).optional(),
  },
  logFormat: {
    flag: '--log-format',
    env: 'PGAUDIT_LOG_FORMAT',
    value: 'csvlog|jsonlog',
    default: 'csvlog',
    description: "which of the server's log files ingest reads: csvlog (.csv) or jsonlog (.json, PostgreSQL 15+); log_destination must include it",
    type: z.enum(['csvlog', 'jsonlog']),
  },
  logDir: {
    flag: '--log-dir',
    env: 'PGAUDIT_LOG_DIR',
    value: 'dir',
    description: "the server's csvlog directory (pgaudit events), with --log-source dir",
    example: '/var/lib/postgresql/15/main/log',
    type: z.string().min(1),
  },
  // storage
  s3ForcePathStyle: {
    // Commander sets a plain boolean flag to true whenever its variable is *defined*, so
    // AUDIT_S3_FORCE_PATH_STYLE=false turned path-style addressing on: an optional value keeps the
    // variable's text for yesNo to read (settingOption presets the bare flag to true).
    flag: '--s3-force-path-style',
    env: 'AUDIT_S3_FORCE_PATH_STYLE',
    value: '[bool]',
    description: 'address buckets as https://host/bucket (MinIO, Ceph RGW); true or false',
    type: yesNo,
  },
  s3Sse: {
    flag: '--s3-sse',
    env: 'AUDIT_S3_SSE',
    value: 'mode',
    default: 'AES256',
    choices: ['AES256', 'aws:kms', 'none'],
    description: 'server-side encryption of new objects',
    type: z.enum(['AES256', 'aws:kms', 'none']),
  },
  s3KmsKeyId: {
    flag: '--s3-kms-key-id',
    env: 'AUDIT_S3_KMS_KEY_ID',
    value: 'id',
    description: 'KMS key for --s3-sse aws:kms',
    type: z.string().optional(),
  },
  retention: {
    flag: '--retention',
    env: 'AUDIT_RETENTION',
    value: 'span',
    default: '6y',
    description: 'Object Lock retention of each object: years (6y) or days',
    example: '6y',
    type: z.string().min(1),
  },
  allowShortRetention: {
    flag: '--allow-short-retention',
    description: 'accept a retention under six years (tests and trials only)',
    type: switchFlag,
  },
  lockReadbackEvery: {
    flag: '--lock-readback-every',
    env: 'AUDIT_LOCK_READBACK_EVERY',
    value: 'n',
    default: '16',
    description:
      "read back the Object Lock of the first stored object and then of one in this many (1: every object); the bucket's lock configuration is read again every --lock-config-check-interval, and verify reads every lock",
    type: wholeNumber(1, 1_000_000),
  },
  lockConfigCheckInterval: {
    flag: '--lock-config-check-interval',
    env: 'AUDIT_LOCK_CONFIG_CHECK_INTERVAL',
    value: 'duration',
    default: '10m',
    description: "read the bucket's versioning and Object Lock configuration again this often (it is read at start)",
    type: durationMs(1000),
  },
  // ship
  batchMaxRecords: {
    flag: '--batch-max-records',
    value: 'n',
    default: '10000',
    description: 'seal a file at this many records',
    type: wholeNumber(1, 1_000_000),
  },
  batchMaxBytes: { flag: '--batch-max-bytes', value: 'size', default: '8MiB', description: 'seal a file at this much uncompressed JSON', type: byteSize() },
  batchMaxAge: { flag: '--batch-max-age', value: 'duration', default: '5s', description: 'seal a file this long after its first record', type: durationMs() },
  maxInflightBytes: {
    flag: '--max-inflight-bytes',
    value: 'size',
    default: '64MiB',
    description: 'pause the slot while this much is received but not stored',
    type: byteSize(),
  },
  heartbeatInterval: {
    flag: '--heartbeat-interval',
    env: 'AUDIT_HEARTBEAT_INTERVAL',
    value: 'duration',
    default: '1h',
    description: 'signed "nothing happened" checkpoint when idle this long (at least 1m unless --allow-short-retention)',
    type: durationMs(1000),
  },
  attestCheckInterval: {
    flag: '--attest-check-interval',
    value: 'duration',
    default: '1m',
    description: 'read the capture configuration this often; attested in the trail when it changed, and once per heartbeat interval',
    type: durationMs(100),
  },
  gracePeriod: {
    flag: '--grace-period',
    value: 'duration',
    default: '30s',
    description: 'on SIGTERM, time to store what is open before exiting',
    type: durationMs(),
  },
  drain: { flag: '--drain', description: 'ship everything committed before start, then exit (jobs, tests)', type: switchFlag },
  httpPort: {
    flag: '--http-port',
    env: 'AUDIT_HTTP_PORT',
    value: 'port',
    default: '9898',
    description: '/healthz, /readyz, /metrics (0: off)',
    type: wholeNumber(0, 65535),
  },
  // ingest
  follow: { flag: '--follow', description: 'keep tailing the log directory until SIGINT/SIGTERM', type: switchFlag },
  pollMs: { flag: '--poll-ms', value: 'ms', default: '500', description: 'how often --follow looks for new lines', type: wholeNumber(10, 60_000) },
  contextWait: {
    flag: '--context-wait',
    env: 'AUDIT_CONTEXT_WAIT',
    value: 'duration',
    default: '60s',
    type: durationMs(),
    description:
      "how long a read waits for the server's line with its app context (audit_read_context) before it is written " +
      'with app_context unknown; until then it is held, saved for the next run',
  },
  chunkBytes: {
    flag: '--chunk-bytes',
    value: 'bytes',
    default: '1048576',
    hidden: true,
    description: 'log bytes per transaction',
    type: wholeNumber(512, 1 << 30),
  },
  // verify
  maxHeadAge: {
    flag: '--max-head-age',
    value: 'duration',
    default: '2h',
    description: 'the newest digest must be younger (heartbeats keep it fresh)',
    type: durationMs(),
  },
  minRetention: {
    flag: '--min-retention',
    value: 'span',
    default: '6y',
    description: 'every object must be locked at least this long past its creation',
    type: z.string().min(1),
  },
  state: {
    flag: '--state',
    env: 'AUDIT_VERIFY_STATE',
    value: 'file',
    type: z.string().min(1).optional(),
    description: 'incremental: remember the verified head here; later runs read only new files and a sample of older ones',
  },
  sample: { flag: '--sample', value: 'n', default: '20', description: 'with --state: older files re-read at random each run', type: wholeNumber(0) },
  expectHead: {
    flag: '--expect-head',
    env: 'AUDIT_EXPECT_HEAD',
    value: 'seq:sha256',
    type: headRef.optional(),
    description: 'a head an earlier report printed: the archive must still hold that digest, unchanged (catches a cut tail)',
  },
  start: {
    flag: '--start',
    value: 'seq:sha256',
    type: headRef.optional(),
    description: 'when the oldest files have expired: a digest an earlier report printed, taken as proven; the walk starts there',
  },
  full: { flag: '--full', description: 'read every file, whatever --state says', type: switchFlag },
  reconcile: {
    flag: '--reconcile',
    description:
      "with --database-url: every audit_log row committed before the run began must be in the archive (waits for the running shipper's slot to pass that point; reads every file)",
    type: switchFlag,
  },
  reconcileWait: {
    flag: '--reconcile-wait',
    value: 'duration',
    default: '2m',
    description: 'how long --reconcile waits for the shipper to confirm everything committed before it began',
    type: durationMs(),
  },
  workers: {
    flag: '--workers',
    env: 'AUDIT_VERIFY_WORKERS',
    value: 'n',
    default: 'cores',
    description:
      'worker threads checking data files beside the chain walk (0: all on the main thread; cores: one per core, at most 8); each holds up to two files, ~110 MiB with files of 10,000 records',
    type: workerCount,
  },
  json: { flag: '--json', description: 'machine-readable report on stdout', type: switchFlag },
  shard: {
    flag: '--shard',
    env: 'AUDIT_VERIFY_SHARD',
    value: 'i/n',
    type: shardRef.optional(),
    description: "check only shard I of N (1/N of the archive's files, in blocks of 64) and write a shard report for verify-merge",
  },
  through: {
    flag: '--through',
    env: 'AUDIT_VERIFY_THROUGH',
    value: 'seq|hour|time',
    type: throughRef.optional(),
    description: 'end the walk at this file, or before the first digest sealed at or after this time ("hour": this UTC hour); give shards the same one',
  },
  shardReport: {
    flag: '--shard-report',
    env: 'AUDIT_VERIFY_SHARD_REPORT',
    value: 'file',
    type: z.string().min(1).optional(),
    description: "with --shard: write the shard's report to this file (default: stdout)",
  },
  // acknowledge
  reviewer: {
    flag: '--reviewer',
    env: 'AUDIT_REVIEWER',
    value: 'name',
    type: z.string().min(1).optional(),
    description: 'the person acknowledging, when the database login is shared (recorded as app_user_id)',
  },
  // console
  listen: {
    flag: '--listen',
    env: 'AUDIT_CONSOLE_LISTEN',
    value: 'host:port',
    default: '127.0.0.1:8080',
    description: 'where the console listens (port 0: any free port, logged; an address other than loopback needs --tls-cert and --tls-key)',
    type: listenAddress,
  },
  accounts: {
    flag: '--accounts',
    env: 'AUDIT_CONSOLE_ACCOUNTS',
    value: 'file',
    description: 'the local accounts file (pg-audit-shipper console-account writes its lines)',
    example: '/etc/pg-audit-shipper/console-accounts',
    type: z.string().min(1),
  },
  tlsCert: {
    flag: '--tls-cert',
    env: 'AUDIT_CONSOLE_TLS_CERT',
    value: 'pem',
    description: 'serve HTTPS with this certificate (PEM, chain included)',
    type: z.string().min(1).optional(),
  },
  tlsKey: {
    flag: '--tls-key',
    env: 'AUDIT_CONSOLE_TLS_KEY',
    value: 'pem',
    description: "the certificate's private key (PEM)",
    type: z.string().min(1).optional(),
  },
  sessionTtl: {
    flag: '--session-ttl',
    env: 'AUDIT_CONSOLE_SESSION_TTL',
    value: 'duration',
    default: '30m',
    description: 'a session ends after this long without a request',
    type: durationMs(60_000),
  },
  publicUrl: {
    flag: '--public-url',
    env: 'AUDIT_CONSOLE_PUBLIC_URL',
    value: 'url',
    description: "the console's URL as browsers reach it (behind a proxy); the OIDC redirect is <url>oidc/callback (default: the address it listens on)",
    example: 'https://audit-console.example.org/',
    type: z.string().url().optional(),
  },
  oidcIssuer: {
    flag: '--oidc-issuer',
    env: 'AUDIT_CONSOLE_OIDC_ISSUER',
    value: 'url',
    description: 'sign in through this OpenID Connect provider (its issuer URL; discovered at start)',
    example: 'https://login.example.org/realms/clinic',
    type: z.string().url().optional(),
  },
  oidcClientId: {
    flag: '--oidc-client-id',
    env: 'AUDIT_CONSOLE_OIDC_CLIENT_ID',
    value: 'id',
    description: "the console's client id at the provider",
    type: z.string().min(1).optional(),
  },
  oidcClientSecret: {
    flag: '--oidc-client-secret',
    env: 'AUDIT_CONSOLE_OIDC_CLIENT_SECRET',
    value: 'secret',
    description: "the client's secret (prefer the variable: a flag shows in the process list)",
    type: z.string().min(1).optional(),
  },
  oidcGroupsClaim: {
    flag: '--oidc-groups-claim',
    env: 'AUDIT_CONSOLE_OIDC_GROUPS_CLAIM',
    value: 'claim',
    default: 'groups',
    description: "the claim listing a person's groups (asked as a scope too)",
    type: z.string().min(1),
  },
  oidcInvestigators: {
    flag: '--oidc-investigators',
    env: 'AUDIT_CONSOLE_OIDC_INVESTIGATORS',
    value: 'groups',
    description: 'groups whose members are investigators (search, reports, evidence, acknowledgements); comma-separated',
    type: fileList,
  },
  oidcViewers: {
    flag: '--oidc-viewers',
    env: 'AUDIT_CONSOLE_OIDC_VIEWERS',
    value: 'groups',
    description: 'groups whose members are viewers (the status page); comma-separated',
    type: fileList,
  },
  verifyEvery: {
    flag: '--verify-every',
    env: 'AUDIT_CONSOLE_VERIFY_EVERY',
    value: 'duration',
    default: '15m',
    description: 'the status page verifies the whole archive again this often (and on demand)',
    type: durationMs(60_000),
  },
} as const satisfies Record<string, SettingSpec>;

export type SettingName = keyof typeof SETTINGS;

/**
 * A commander option for a setting, with its variable and default shown in --help. `description`
 * only where a command means something narrower by it (verify's optional --database-url).
 */
export function settingOption(name: SettingName, description?: string): Option {
  const s: SettingSpec = SETTINGS[name];
  const o = new Option(s.value === undefined ? s.flag : `${s.flag} ${s.value.startsWith('[') ? s.value : `<${s.value}>`}`, description ?? s.description);
  if (s.env !== undefined) o.env(s.env);
  if (s.default !== undefined) o.default(s.default);
  if (s.choices !== undefined) o.choices(s.choices);
  if (s.value?.startsWith('[')) o.preset(true);
  if (s.hidden) o.hideHelp();
  return o;
}

/** Options for several settings, in order. */
export function addSettings(cmd: Command, ...names: SettingName[]): Command {
  for (const n of names) cmd.addOption(settingOption(n));
  return cmd;
}

type Shape<K extends SettingName> = { [P in K]: (typeof SETTINGS)[P]['type'] };

/** The schema of the named settings, each with its registered type. */
export function settingsSchema<K extends SettingName>(...names: K[]): z.ZodObject<Shape<K>> {
  return z.object(Object.fromEntries(names.map((n) => [n, SETTINGS[n].type])) as unknown as Shape<K>);
}

/** A setting's default as its type parses it (demo runs ship with ship's own defaults). */
export function settingDefault<K extends SettingName>(name: K): z.output<(typeof SETTINGS)[K]['type']> {
  const s: SettingSpec = SETTINGS[name];
  return s.type.parse(s.default) as z.output<(typeof SETTINGS)[K]['type']>;
}

/**
 * Validate raw options against a schema; turn the first problem into a one-line ConfigError. Given
 * the command, a setting read from the environment is named by its variable too, so an operator
 * who set AUDIT_HTTP_PORT in a unit file is told about AUDIT_HTTP_PORT, not only --http-port.
 */
export function validate<T extends z.ZodType>(schema: T, input: Record<string, unknown>, cmd?: Command): z.infer<T> {
  // An empty variable (DATABASE_URL=) means "not set", as shells and compose files use it.
  const raw = Object.fromEntries(Object.entries(input).filter(([, v]) => v !== ''));
  const result = schema.safeParse(raw);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const key = String(issue.path[0] ?? '');
  const spec = (SETTINGS as Record<string, SettingSpec>)[key];
  const option = key ? cmd?.options.find((o) => o.attributeName() === key) : undefined;
  const flag = spec?.flag ?? option?.long ?? (key ? `--${kebab(key)}` : null);
  const env = spec?.env ?? option?.envVar;
  const name = flag === null ? 'configuration' : env ? `${flag} (${env})` : flag;
  const missing = issue.code === 'invalid_type' && raw[key] === undefined;
  const what = missing ? 'is required' : `is invalid: ${issue.message}`;
  const hint = spec?.example !== undefined ? `; e.g. ${spec.flag} ${spec.example}` : '';
  throw new ConfigError(`${name} ${what}${hint}`);
}

function kebab(s: string): string {
  return s.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** For logs and error lines: the URL without its password. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    // libpq also takes secrets as parameters (postgresql://host/db?password=..., sslpassword=...).
    return u.toString().replace(/([?&](?:password|sslpassword)=)[^&#]*/gi, '$1***');
  } catch {
    return '<unparseable url>';
  }
}
