import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { parseDocument } from 'yaml';
import { buildProgram } from '../../src/program.js';
import { PACKAGE_ROOT } from '../../src/paths.js';
import { retentionDays, SIX_YEARS } from '../../src/sink/open.js';

/*
 * No Docker engine runs in this project's CI, so the stack is checked as far as a real YAML parser
 * and the real CLI can take it: the file parses, the services exist and depend on each other as a
 * working stack must, and every pg-audit-shipper invocation and setting in it is one the CLI
 * accepts (the same subcommands and flags the integration tests run).
 */
const file = readFileSync(path.join(PACKAGE_ROOT, 'docker-compose.yml'), 'utf8');
const doc = parseDocument(file, { merge: true });
type Service = {
  image?: string;
  build?: unknown;
  command?: string[] | string;
  entrypoint?: string[];
  environment?: Record<string, string>;
  depends_on?: Record<string, { condition: string }>;
  profiles?: string[];
  volumes?: string[];
  user?: string;
};
const compose = doc.toJS({ maxAliasCount: 100 }) as { services: Record<string, Service>; volumes: Record<string, unknown> };
const CLI = 'node /app/dist/src/cli.js';

/** Every pg-audit-shipper command line a service runs, as argv after the program name. */
function invocations(s: Service): string[][] {
  const out: string[][] = [];
  const entry = s.entrypoint ?? (s.build === '.' || s.image === 'pg-audit-shipper:local' ? ['node', '/app/dist/src/cli.js'] : []);
  const command = Array.isArray(s.command) ? s.command : s.command ? [s.command] : [];
  if (entry.join(' ').startsWith(CLI)) out.push([...entry.slice(2), ...command]);
  for (const script of command) {
    for (const m of String(script).matchAll(/node \/app\/dist\/src\/cli\.js ([^\n&|;]+)/g)) out.push(m[1]!.trim().split(/\s+/));
  }
  return out;
}

function subcommand(program: Command, argv: string[]): { cmd: Command; rest: string[] } {
  let cmd = program;
  let i = 0;
  for (; i < argv.length; i++) {
    const next = cmd.commands.find((c) => c.name() === argv[i]);
    if (!next) break;
    cmd = next;
  }
  return { cmd, rest: argv.slice(i) };
}

function envNames(cmd: Command): Set<string> {
  const names = new Set<string>();
  const walk = (c: Command): void => {
    for (const o of c.options) if (o.envVar) names.add(o.envVar);
    c.commands.forEach(walk);
  };
  walk(cmd);
  return names;
}

describe('docker-compose.yml', () => {
  it('parses as YAML with no errors or warnings', () => {
    expect(doc.errors).toEqual([]);
    expect(doc.warnings).toEqual([]);
  });

  it('has the stack: database, storage, bucket, keys, schema, sidecar, ingester and the verification job', () => {
    const s = compose.services;
    expect(Object.keys(s)).toEqual(expect.arrayContaining(['postgres', 'minio', 'bucket', 'keygen', 'init', 'ship', 'ingest', 'verify']));
    expect(s.ship!.depends_on).toMatchObject({
      init: { condition: 'service_completed_successfully' },
      keygen: { condition: 'service_completed_successfully' },
      bucket: { condition: 'service_completed_successfully' },
    });
    expect(s.ingest!.volumes).toContain('pglog:/var/log/postgresql/audit:ro');
    expect(s.postgres!.volumes).toContain('pglog:/var/log/postgresql/audit');
    expect(s.verify!.profiles).toEqual(['jobs']);
    for (const v of ['pgdata', 'pglog', 's3data', 'keys']) expect(compose.volumes).toHaveProperty(v);
  });

  it('creates the bucket with Object Lock and a COMPLIANCE default retention of at least six years', () => {
    const script = (compose.services.bucket!.command as string[]).join('\n');
    expect(script).toMatch(/mc mb --ignore-existing --with-lock local\/audit-archive/);
    const days = Number(/mc retention set --default COMPLIANCE (\d+)d local\/audit-archive/.exec(script)?.[1]);
    expect(days).toBeGreaterThanOrEqual(retentionDays(SIX_YEARS));
    expect(compose.services.ship!.environment!.AUDIT_ARCHIVE).toBe('s3://audit-archive/clinic');
  });

  it('runs only subcommands, flags and settings the CLI has', () => {
    const program = buildProgram();
    const known = envNames(program);
    const seen: string[] = [];
    for (const [name, s] of Object.entries(compose.services)) {
      for (const argv of invocations(s)) {
        const { cmd, rest } = subcommand(program, argv);
        expect(cmd, `${name}: ${argv.join(' ')}`).not.toBe(program);
        seen.push(cmd.name());
        for (const flag of rest.filter((a) => a.startsWith('--'))) {
          expect(
            cmd.options.map((o) => o.long),
            `${name}: ${flag}`,
          ).toContain(flag);
        }
      }
      for (const k of Object.keys(s.environment ?? {})) {
        if (/^(AUDIT_|PGAUDIT_|DATABASE_URL$)/.test(k)) expect([...known], `${name}: ${k}`).toContain(k);
      }
    }
    expect(new Set(seen)).toEqual(new Set(['keygen', 'init', 'ship', 'ingest', 'verify', 'query']));
  });

  it('builds PostgreSQL with what the shipper checks for: pgaudit, logical decoding, csvlog, TLS-only TCP', () => {
    const dockerfile = readFileSync(path.join(PACKAGE_ROOT, 'docker', 'postgres', 'Dockerfile'), 'utf8');
    for (const setting of [
      'shared_preload_libraries=pgaudit',
      'wal_level=logical',
      'logging_collector=on',
      'log_destination=csvlog',
      'log_directory=/var/log/postgresql/audit',
      'ssl=on',
      'hba_file=/etc/postgresql/pg_hba.conf',
    ]) {
      expect(dockerfile).toContain(`"${setting}"`);
    }
    expect(dockerfile).toMatch(/postgresql-15-pgaudit/);
    const hba = readFileSync(path.join(PACKAGE_ROOT, 'docker', 'postgres', 'pg_hba.conf'), 'utf8');
    expect(hba).toMatch(/^hostnossl\s+all\s+all\s+0\.0\.0\.0\/0\s+reject$/m);
    expect(hba.split('\n').filter((l) => /^host\s/.test(l))).toEqual([]);
  });

  it('builds the shipper image with every file its build reads copied in before `npm ci` (which runs the build)', () => {
    const dockerfile = readFileSync(path.join(PACKAGE_ROOT, 'Dockerfile'), 'utf8');
    const beforeInstall = dockerfile.slice(0, dockerfile.indexOf('RUN npm ci'));
    const copied = [...beforeInstall.matchAll(/^COPY (.+)$/gm)].flatMap((m) => m[1]!.trim().split(/\s+/).slice(0, -1)); // every source, not the target
    const pkg = JSON.parse(readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    expect(pkg.scripts.prepare).toBe('npm run build');
    const needed = ['package.json', 'package-lock.json', ...[...pkg.scripts.build!.matchAll(/(?:-p |node )(\S+)/g)].map((m) => m[1]!), 'src'];
    expect(needed).toContain('scripts/bundle.mjs');
    for (const f of needed)
      expect(
        copied.some((c) => c === f || f.startsWith(`${c}/`)),
        f,
      ).toBe(true);
  });
});
