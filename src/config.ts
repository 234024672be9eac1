import { Option, type Command } from 'commander';
import { z } from 'zod';
import { parseDuration } from './duration.js';
import { ConfigError } from './errors.js';

/**
 * Every setting is a flag with an environment fallback. Commander resolves flag > env; zod checks
 * the result once at start, and a failure names the flag, its variable and the fix in one line.
 */
export interface SettingSpec {
  flag: string;
  env: string;
  description: string;
  example: string;
  /** the value's name in --help; ending in "..." the flag can be repeated (the variable: comma-separated) */
  value?: string;
  default?: string;
}

export const SETTINGS = {
  databaseUrl: {
    flag: '--database-url', env: 'DATABASE_URL', description: 'PostgreSQL connection URL',
    example: 'postgresql://user@db.example/app?sslmode=verify-full',
  },
  archive: {
    flag: '--archive', env: 'AUDIT_ARCHIVE', description: 'the archive of sealed files: file:///path, s3://bucket/prefix, or (ship) firehose://stream',
    example: 'file:///var/lib/audit-archive',
  },
  signingKey: {
    flag: '--signing-key', env: 'AUDIT_SIGNING_KEY', description: 'Ed25519 private key (PEM file) that signs digests',
    example: '/etc/pg-audit-shipper/signing-key.pem',
  },
  verifyKey: {
    flag: '--verify-key', env: 'AUDIT_VERIFY_KEY', value: 'pem...',
    description: 'Ed25519 public key(s) (PEM files) the digests are signed with; repeat the flag for rotated keys (the variable takes a comma-separated list)',
    example: '/etc/pg-audit-shipper/verify-key.pem',
  },
  slot: {
    flag: '--slot', env: 'AUDIT_SLOT', value: 'name', default: 'pg_audit_shipper',
    description: "the shipper's replication slot (ship creates it if missing; one shipper, one slot, one archive)",
    example: 'pg_audit_shipper',
  },
  statementMaxLength: {
    flag: '--statement-max-length', env: 'AUDIT_STATEMENT_MAX_LENGTH', value: 'chars', default: '2000',
    description: 'longest statement text kept per pgaudit event (the rest is cut while the log is read)',
    example: '2000',
  },
  logDir: {
    flag: '--log-dir', env: 'PGAUDIT_LOG_DIR', description: "the server's csvlog directory (pgaudit events)",
    example: '/var/lib/postgresql/15/main/log',
  },
} as const satisfies Record<string, SettingSpec>;

export type SettingName = keyof typeof SETTINGS;

/** A commander option for a shared setting, with its env fallback (and default) shown in --help. */
export function settingOption(name: SettingName, valueName?: string): Option {
  const s: SettingSpec = SETTINGS[name];
  const o = new Option(`${s.flag} <${valueName ?? s.value ?? 'value'}>`, s.description).env(s.env);
  return s.default === undefined ? o : o.default(s.default);
}

/** --statement-max-length, checked the same way wherever it is taken. */
export const statementMaxLength = () => wholeNumber(SETTINGS.statementMaxLength.flag, 16, 1_000_000);

/**
 * `--s3-force-path-style`, declared once. Commander sets a plain boolean flag to true whenever its
 * environment variable is *defined*, so AUDIT_S3_FORCE_PATH_STYLE=false turned path-style
 * addressing on. An optional value keeps the variable's text for `yesNo` to read.
 */
export function s3ForcePathStyleOption(): Option {
  return new Option('--s3-force-path-style [bool]', 'address buckets as https://host/bucket (MinIO, Ceph RGW); true or false')
    .preset(true).env('AUDIT_S3_FORCE_PATH_STYLE');
}

const YES = new Set(['true', '1', 'yes', 'on']);
const NO = new Set(['false', '0', 'no', 'off']);

/** A yes/no setting from the command line (a bare flag) or the environment (its text); unset is no. */
export const yesNo = z.union([z.boolean(), z.string()]).optional().transform((v, ctx) => {
  if (v === undefined || typeof v === 'boolean') return v === true;
  const t = v.trim().toLowerCase();
  if (YES.has(t)) return true;
  if (NO.has(t)) return false;
  ctx.addIssue({ code: 'custom', message: `takes true or false (or 1/0, yes/no, on/off), not ${JSON.stringify(v)}` });
  return z.NEVER;
});

export const postgresUrl = z.string().refine((v) => {
  try {
    const u = new URL(v);
    return u.protocol === 'postgres:' || u.protocol === 'postgresql:';
  } catch {
    return false;
  }
}, 'must be a postgresql:// URL');

/**
 * A whole-number setting, as given on the command line or in the environment. The error says what
 * is accepted and repeats what was given, instead of a parser's "expected int, received NaN".
 */
/** A duration flag (500ms, 5s, 10m, 1h) as milliseconds, at least minMs. */
export const durationMs = (flag: string, minMs = 1) => z.string().transform((v, ctx) => {
  const ms = parseDuration(v);
  if (ms === null || ms <= 0) { ctx.addIssue({ code: 'custom', message: `${flag} takes a duration such as 500ms, 5s, 10m, 1h` }); return z.NEVER; }
  if (ms < minMs) { ctx.addIssue({ code: 'custom', message: `${flag} must be at least ${minMs / 1000}s, not ${v}` }); return z.NEVER; }
  return ms;
});

export function wholeNumber(flag: string, min: number, max?: number) {
  const range = max === undefined ? `of at least ${min}` : `from ${min} to ${max}`;
  return z.union([z.string(), z.number()]).transform((v, ctx) => {
    const n = typeof v === 'number' ? v : /^\s*[+-]?\d+\s*$/.test(v) ? Number(v) : NaN;
    if (!Number.isSafeInteger(n) || n < min || (max !== undefined && n > max)) {
      ctx.addIssue({ code: 'custom', message: `${flag} takes a whole number ${range}, not ${JSON.stringify(String(v))}` });
      return z.NEVER;
    }
    return n;
  });
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
  const hint = spec ? `; e.g. ${spec.flag} ${spec.example}` : '';
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
