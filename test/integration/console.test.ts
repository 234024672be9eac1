import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { unzipSync } from 'fflate';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeKeys, readArchive, shipArgs, tempArchiveDir, type TestKeys } from '../helpers/archive.js';
import { CLI, runCli } from '../helpers/cli.js';
import { freshDatabase, urlFor, withClient } from '../helpers/db.js';
import { clinicWorkload } from '../helpers/workload.js';
import { PACKAGE_ROOT } from '../../src/paths.js';
import { timeKey } from '../../src/seal/event-time.js';

/**
 * The compliance console end to end, in a real browser: Debian's chromium, headless, driven by
 * playwright-core with the system executable (nothing is downloaded). The archive is the real
 * shipper's, from a clinic workload on the real PostgreSQL; the console's answers are compared with
 * the database and with `query`, its downloads are opened and checked, and its own use is followed
 * into audit_log and the archive.
 */
const CHROMIUM = process.env.TEST_CHROMIUM ?? '/usr/bin/chromium';
const SHOTS = path.join(PACKAGE_ROOT, 'docs', 'console');
const PASSWORD = 'correct horse battery staple';
/** The report's six years, ending next year: they hold every event of this run. */
const TO = `${new Date().getUTCFullYear() + 1}-01-01`;
const FROM = `${new Date().getUTCFullYear() - 5}-01-01`;

let keys: TestKeys;
let db: { name: string; url: string };
let archive: string;
let accounts: string;
let browser: Browser;
const consoles: ChildProcess[] = [];

async function drain(): Promise<void> {
  const r = await runCli(shipArgs({ archive: `file://${archive}`, keys, extra: ['--slot', `s_${db.name}`, '--drain', '--batch-max-records', '80'] }), {
    DATABASE_URL: urlFor(db.name, 'ship_login'),
  });
  expect(r.code, r.stderr).toBe(0);
}

/** `console-account NAME --role ROLE`, the password on stdin as an operator would pipe it. */
async function addAccount(name: string, role: string, password = PASSWORD): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [CLI, 'console-account', name, '--role', role, '--accounts', accounts], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += String(d)));
  child.stderr.on('data', (d) => (stderr += String(d)));
  child.stdin.end(`${password}\n`);
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  return { code, stdout, stderr };
}

/** Start a console on a free port; resolves with its URL once it listens (from its JSON log line). */
async function startConsole(archiveDir: string, extra: string[] = [], env: Record<string, string> = {}): Promise<string> {
  // Not startCli: the suite's setup stops every CLI it started after each test, and this one serves several.
  const child = spawn(
    process.execPath,
    [
      CLI,
      'console',
      '--archive',
      `file://${archiveDir}`,
      '--verify-key',
      keys.verifyKey,
      '--accounts',
      accounts,
      ...(extra.includes('--listen') ? [] : ['--listen', '127.0.0.1:0']),
      ...extra,
    ],
    { env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', LOG_LEVEL: 'info', ...env }, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  consoles.push(child);
  return new Promise((resolve, reject) => {
    let err = '';
    child.stderr!.on('data', (d: Buffer) => {
      err += String(d);
      const m = /"url":"(https?:\/\/127\.0\.0\.1:\d+\/)"/.exec(err);
      if (m) resolve(m[1]!);
    });
    child.on('exit', (code) => reject(new Error(`console exited ${code}: ${err}`)));
  });
}

async function signIn(page: Page, base: string, name: string, password = PASSWORD): Promise<void> {
  await page.goto(`${base}login`);
  await page.fill('#name', name);
  await page.fill('#password', password);
  await page.click('button[type=submit]');
}

/** The status page once its first verification is in (it reloads itself until then). */
async function statusOf(page: Page, base: string): Promise<string> {
  for (let i = 0; i < 100; i++) {
    await page.goto(base);
    const text = await page.textContent('main');
    if (text && !/Verifying the archive for the first time|Not verified yet/.test(text)) return text;
    await page.waitForTimeout(200);
  }
  throw new Error('the status page never showed a verification');
}

/** axe-core in the page: serious and critical violations (WCAG rules axe checks by default). */
async function accessibilityProblems(page: Page): Promise<string[]> {
  // Evaluated through the browser's debugging protocol: the console's CSP (rightly) refuses a script tag.
  await page.evaluate(await readFile(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8'));
  const result = (await page.evaluate(() => (globalThis as unknown as { axe: { run: () => Promise<unknown> } }).axe.run())) as {
    violations: { id: string; impact: string; help: string; nodes: unknown[] }[];
  };
  return result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => `${v.id}: ${v.help} (${v.nodes.length})`);
}

/** audit_log ids answering a WHERE clause, bookkeeping left out: the ground truth. */
async function truth(where: string): Promise<string[]> {
  return withClient(db.url, async (c) =>
    (
      await c.query<{ id: string }>(`SELECT id::text FROM audit.audit_log WHERE source NOT IN ('ingest', 'attest') AND (${where}) ORDER BY audit_log.id`)
    ).rows.map((r) => r.id),
  );
}

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `no browser at ${CHROMIUM}: install Debian's chromium (apt-get install chromium), as scripts/with-test-services.sh does, or set TEST_CHROMIUM`,
    );
  }
  keys = await makeKeys();
  db = await freshDatabase('console');
  archive = await tempArchiveDir();
  accounts = path.join(await mkdtemp(path.join(tmpdir(), 'console-accounts-')), 'accounts');
  await drain();
  await clinicWorkload(db, 120);
  await drain();
  for (const [name, role] of [
    ['ivy', 'investigator'],
    ['vic', 'viewer'],
    ['tom', 'viewer'],
  ]) {
    const r = await addAccount(name!, role!);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(`added console account ${name} (${role}) in ${accounts}\n`);
  }
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  await mkdir(SHOTS, { recursive: true });
}, 240_000);

afterAll(async () => {
  await browser?.close();
  for (const c of consoles) c.kill('SIGTERM');
});

describe('console accounts', () => {
  it('keeps passwords hashed (scrypt) in a 0600 file, refuses short passwords and names that are not names', async () => {
    const text = await readFile(accounts, 'utf8');
    expect(text).not.toContain(PASSWORD);
    expect(text).toMatch(/^ivy:investigator:scrypt:32768:8:1:[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+$/m);
    const { mode } = await import('node:fs/promises').then((f) => f.stat(accounts));
    expect(mode & 0o777).toBe(0o600);
    expect(await addAccount('bob', 'viewer', 'short')).toMatchObject({ code: 2, stderr: expect.stringMatching(/at least 12 characters/) });
    expect(await addAccount('bob smith', 'viewer')).toMatchObject({ code: 2, stderr: expect.stringMatching(/account name "bob smith" is not one/) });
  });

  it('refuses to listen beyond this machine without TLS, and a broken accounts file, saying what to do', async () => {
    const open = await runCli([
      'console',
      '--archive',
      `file://${archive}`,
      '--verify-key',
      keys.verifyKey,
      '--accounts',
      accounts,
      '--listen',
      '0.0.0.0:8080',
    ]);
    expect(open.code).toBe(2);
    expect(open.stderr).toMatch(/--listen 0\.0\.0\.0:8080 \(AUDIT_CONSOLE_LISTEN\) is reachable from other machines.*--tls-cert/);
    const broken = path.join(path.dirname(accounts), 'broken');
    await writeFile(broken, 'ann:admin:scrypt:1:1:1:a:b\n');
    const bad = await runCli(['console', '--archive', `file://${archive}`, '--verify-key', keys.verifyKey, '--accounts', broken]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/broken line 1: role "admin" is not viewer or investigator/);
  });
});

describe('the console in a browser', () => {
  let base: string;
  let page: Page;

  beforeAll(async () => {
    base = await startConsole(archive, ['--database-url', urlFor(db.name, 'console_login')]);
    page = await (await browser.newContext({ acceptDownloads: true, viewport: { width: 1280, height: 900 } })).newPage();
  }, 60_000);

  it('signs in with a local account (a wrong password is refused) and shows the archive intact, with the counts verify reports', async () => {
    await page.goto(`${base}login`);
    expect(await accessibilityProblems(page)).toEqual([]);
    await signIn(page, base, 'ivy', 'not the password at all');
    expect(await page.textContent('.error')).toBe('That account and password do not match.');
    // A guesser gets five tries an account, then waits: even the right password is not tried meanwhile.
    for (let i = 0; i < 5; i++) await signIn(page, base, 'tom', `guess number ${i}`);
    await signIn(page, base, 'tom');
    expect(await page.textContent('.error')).toMatch(/^Too many failed sign-ins: try again in 15 min\.$/);
    await signIn(page, base, 'ivy');
    const status = await statusOf(page, base);
    const verify = await runCli(['verify', '--archive', `file://${archive}`, '--verify-key', keys.verifyKey, '--json']);
    expect(verify.code, verify.stderr).toBe(0);
    const checked = (JSON.parse(verify.stdout) as { checked: { files: number; records: number; head: { file_seq: number } } }).checked;
    expect(await page.textContent('#verdict')).toBe('Intact');
    expect(status).toContain(`${checked.files} data files`);
    expect(await page.textContent('dl.facts dt:text("Records") + dd')).toBe(String(checked.records));
    expect(status).toContain(`file ${checked.head.file_seq}, sealed`);
    expect(await page.locator('svg.chart').count()).toBe(4);
    // The lag chart is the signed digests' own figure: the longest time from a file's last event to its sealing.
    let lag = 0;
    for (const f of await readdir(path.join(archive, 'digests'))) {
      const d = JSON.parse((await readFile(path.join(archive, 'digests', f), 'utf8')).split('\n')[0]!) as {
        kind: string;
        created_at: string;
        last_event_at: string | null;
      };
      if (d.kind === 'data' && d.last_event_at) lag = Math.max(lag, (Date.parse(d.created_at) - Date.parse(timeKey(d.last_event_at)!)) / 1000);
    }
    expect((await page.textContent('figure:last-of-type figcaption'))!.replace(/\s+/g, ' ')).toMatch(
      new RegExp(`highest ${Math.max(1, Math.round(lag))} s a day$`),
    );
    expect(await accessibilityProblems(page)).toEqual([]);
    await page.screenshot({ path: path.join(SHOTS, 'status.png'), fullPage: true });
  });

  it('answers a search with exactly the events the database holds for that patient, each with its proof; nothing of it in the URL', async () => {
    await page.goto(`${base}search`);
    expect(await accessibilityProblems(page)).toEqual([]);
    await page.fill('#f-customer', '42');
    await page.screenshot({ path: path.join(SHOTS, 'search.png'), fullPage: true });
    const response = page.waitForResponse((r) => r.url().endsWith('/search') && r.request().method() === 'POST');
    await page.click('form.stack button[type=submit]');
    const headers = (await response).headers();
    expect(page.url()).toBe(`${base}search`);
    expect(headers['cache-control']).toBe('no-store');
    expect(headers['content-security-policy']).toMatch(/frame-ancestors 'none'/);
    // Not the console's own events: this search is recorded as one, about patient 42, once answered.
    const expected = await truth(`app_customer_id = '42' AND source <> 'console'`);
    expect(expected.length).toBeGreaterThan(1);
    expect(await page.textContent('p[role=status] strong')).toBe(String(expected.length));
    // The search's last progress line says what it read, as query's provenance does.
    const q = await runCli(['query', '--archive', `file://${archive}`, '--verify-key', keys.verifyKey, '--customer', '42']);
    const [, digests, filesRead] = /(\d+) digests? checked link by link, (\d+) files? read/.exec(q.stdout)!;
    const skipped = /; (\d+) files? not read: the key index/.exec(q.stdout)?.[1];
    const found = /answer: +(\d+) events?/.exec(q.stdout)![1];
    expect((await page.textContent('main > output.progress:last-of-type'))!.replace(/\s+/g, ' ')).toBe(
      `Searched ${digests} signed digests checked, ${filesRead} files read${skipped ? `, ${skipped} ruled out by their key index` : ''}, ${found} events found.`,
    );
    const ids = await page.$$eval('dl.detail dt', (dts) => dts.filter((dt) => dt.textContent === 'id').map((dt) => dt.nextElementSibling!.textContent));
    expect(ids.sort((a, b) => Number(a) - Number(b))).toEqual(expected);
    expect(await page.textContent('dl.detail')).toMatch(/signed digest.*digests\/\d+\.digest, key [0-9a-f]{64}/s);
    expect(await accessibilityProblems(page)).toEqual([]);
  });

  it("makes a patient's access report equal to query's answer: the page, the CSV, the PDF; and the evidence zip passes verify-evidence", async () => {
    await page.goto(`${base}report`);
    expect(await accessibilityProblems(page)).toEqual([]);
    await page.fill('#r-customer', '42');
    await page.fill('#r-from', FROM);
    await page.fill('#r-to', TO);
    await page.click('form.stack button[type=submit]');
    const q = await runCli([
      'query',
      '--archive',
      `file://${archive}`,
      '--verify-key',
      keys.verifyKey,
      '--customer',
      '42',
      '--from',
      FROM,
      '--to',
      TO,
      '--format',
      'csv',
    ]);
    expect(q.code, q.stderr).toBe(0);
    const csvRows = q.stdout.trim().split('\n').slice(1);
    expect(await page.locator('main table tbody tr').count()).toBe(csvRows.length);
    expect(await page.textContent('h1')).toBe('Access report for patient 42');
    // The head this very search walked to, as verify names the archive's head.
    const v = await runCli(['verify', '--archive', `file://${archive}`, '--verify-key', keys.verifyKey, '--json']);
    const head = (JSON.parse(v.stdout) as { expect_head: string }).expect_head;
    expect((await page.textContent('main'))!.replace(/\s+/g, ' ')).toContain(`Verified against archive head ${head}`);
    expect(await accessibilityProblems(page)).toEqual([]);
    await page.screenshot({ path: path.join(SHOTS, 'report.png'), fullPage: true });

    const download = async (label: string) => {
      const [d] = await Promise.all([page.waitForEvent('download'), page.click(`button:text("${label}")`)]);
      return readFile((await d.path())!);
    };
    expect((await download('Download CSV')).toString('utf8')).toBe(q.stdout);

    const pdf = await download('Download PDF');
    const pdfjs = await import('pdfjs-dist/legacy/build/pdf.mjs');
    const fonts = path.join(path.dirname(createRequire(import.meta.url).resolve('pdfjs-dist/package.json')), 'standard_fonts/');
    const doc = await pdfjs.getDocument({ data: new Uint8Array(pdf), standardFontDataUrl: fonts }).promise;
    let text = '';
    for (let i = 1; i <= doc.numPages; i++) text += (await (await doc.getPage(i)).getTextContent()).items.map((t) => ('str' in t ? t.str : '')).join(' ');
    expect(text).toContain('Access report for patient 42');
    expect(text.replace(/\s+/g, '')).toContain(`Verifiedagainstarchivehead${head}`);
    // A cell that wraps is two runs of text in the PDF: compared without white space.
    const flat = text.replace(/\s+/g, '');
    const times = csvRows.map((l) => l.split(',')[3]!);
    expect(times).toHaveLength(csvRows.length);
    for (const t of times) expect(flat).toContain(t.replace(/\s+/g, ''));

    const zip = unzipSync(new Uint8Array(await download('Download evidence package (zip)')));
    const dir = await mkdtemp(path.join(tmpdir(), 'console-evidence-'));
    for (const [name, bytes] of Object.entries(zip)) {
      await mkdir(path.dirname(path.join(dir, name)), { recursive: true });
      await writeFile(path.join(dir, name), bytes);
    }
    const checked = await runCli(['verify-evidence', path.join(dir, 'evidence'), '--verify-key', keys.verifyKey]);
    expect(checked.code, checked.stdout + checked.stderr).toBe(0);
    expect((await readFile(path.join(dir, 'evidence', 'records.csv'), 'utf8')).trim().split('\n').length - 1).toBe(csvRows.length);
  });

  it('records each search, report and export in audit_log with the person and the patient, and they reach the archive', async () => {
    const uses = await withClient(
      db.url,
      async (c) =>
        (
          await c.query<{ action: string; app_user_id: string; app_customer_id: string; session_user_name: string; statement: string }>(
            `SELECT action, app_user_id, app_customer_id, session_user_name, statement FROM audit.audit_log WHERE source = 'console' ORDER BY id`,
          )
        ).rows,
    );
    expect(uses.map((u) => [u.action, u.app_user_id, u.app_customer_id, u.session_user_name])).toEqual([
      ['CONSOLE SEARCH', 'ivy', '42', 'console_login'],
      ['CONSOLE REPORT', 'ivy', '42', 'console_login'],
      ['CONSOLE REPORT', 'ivy', '42', 'console_login'],
      ['CONSOLE REPORT', 'ivy', '42', 'console_login'],
      ['CONSOLE EVIDENCE', 'ivy', '42', 'console_login'],
    ]);
    const search = JSON.parse(uses[0]!.statement) as { results: number; query: { customer: string } };
    expect(search.query.customer).toBe('42');
    expect(search.results).toBe((await truth(`app_customer_id = '42' AND source <> 'console'`)).length);
    expect(uses.slice(1, 4).map((u) => (JSON.parse(u.statement) as { format: string }).format)).toEqual(['html', 'csv', 'pdf']);
    await drain();
    const { records } = await readArchive(archive, keys.keys);
    expect(records.filter((r) => r.source === 'console').map((r) => r.action)).toEqual(uses.map((u) => u.action));
  });

  it('shows a tamper the chain records as a finding; an investigator acknowledges it with a reason, through the trail, and the archive reads intact again', async () => {
    await withClient(db.url, async (c) => {
      await c.query('SET ROLE audit_owner');
      await c.query('ALTER TABLE audit.audit_log DISABLE TRIGGER audit_log_append_only');
      await c.query(`UPDATE audit.audit_log SET app_user_id = 'nobody' WHERE id = (SELECT min(id) FROM audit.audit_log WHERE source = 'trigger')`);
      await c.query('ALTER TABLE audit.audit_log ENABLE TRIGGER audit_log_append_only');
    });
    await drain();
    // "Verify now", then the page until it shows a verification that started after the click.
    const verifiedAt = async () => (await page.textContent('dl.facts dt:text("Verified") + dd'))!.split(' ')[0]!;
    const reverify = async () => {
      await page.goto(base);
      const clicked = new Date().toISOString();
      await page.click('button:text("Verify now")');
      for (let i = 0; i < 100 && (await verifiedAt()) < clicked; i++) {
        await page.waitForTimeout(100);
        await page.goto(base);
      }
      expect((await verifiedAt()) >= clicked).toBe(true);
    };
    await page.goto(base);
    await reverify();
    expect(await page.textContent('#verdict')).toBe('1 finding');
    expect((await page.textContent('ul.findings'))!.trim()).toMatch(/^tamper at data\/dt=/);
    expect(await accessibilityProblems(page)).toEqual([]);
    await page.fill('ul.findings input[name=reason]', 'restored from backup, ticket 88');
    await page.click('ul.findings button[type=submit]');
    expect(await page.textContent('main p')).toMatch(/^record:\d+ is acknowledged as audit event \d+/);
    await drain();
    await reverify();
    expect(await page.textContent('#verdict')).toBe('Intact');
    expect((await page.textContent('#acks + ul'))!.replace(/\s+/g, ' ')).toMatch(/tamper at .*: acknowledged by ivy at .*: restored from backup, ticket 88/);
  });

  it('a viewer sees the status only: no search, no report, no evidence', async () => {
    const viewer = await (await browser.newContext()).newPage();
    await signIn(viewer, base, 'vic');
    await statusOf(viewer, base);
    expect(await viewer.locator('nav a', { hasText: 'Search' }).count()).toBe(0);
    const r = await viewer.goto(`${base}search`);
    expect(r!.status()).toBe(403);
    expect(await viewer.textContent('main')).toMatch(/Your role is viewer: it shows the status only/);
    const report = await viewer.goto(`${base}report`);
    expect(report!.status()).toBe(403);
  });

  it('refuses a form that did not come from the console (CSRF), and a request without a session', async () => {
    const forged = await fetch(`${base}search`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'customer=42',
      redirect: 'manual',
    });
    expect(forged.status).toBe(303);
    expect(forged.headers.get('location')).toBe('/login');
    // Signed in, but the form's token missing: refused.
    const cookies = await page.context().cookies();
    const withSession = await fetch(`${base}search`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: cookies.map((c) => `${c.name}=${c.value}`).join('; ') },
      body: 'customer=42',
      redirect: 'manual',
    });
    expect(withSession.status).toBe(403);
    expect(await withSession.text()).toMatch(/This form expired or did not come from this console/);
  });
});

describe('a console whose use cannot be recorded', () => {
  it('shows no answer: a search and a report are refused with what to grant, and nothing of them is shown', async () => {
    // app_login may not call audit.record_console_use (no audit_console): as if the grant were taken away.
    const base = await startConsole(archive, ['--database-url', urlFor(db.name, 'app_login')]);
    const page = await browser.newPage();
    await signIn(page, base, 'ivy');
    await page.goto(`${base}search`);
    await page.fill('#f-customer', '42');
    await page.click('form.stack button[type=submit]');
    expect(await page.textContent('p.error')).toMatch(
      /^The search failed, and its answer is not shown: the console's database login may not record its use: grant it audit_console/,
    );
    expect(await page.locator('main table').count()).toBe(0);
    await page.goto(`${base}report`);
    await page.fill('#r-customer', '42');
    await page.fill('#r-from', FROM);
    await page.fill('#r-to', TO);
    await page.click('form.stack button[type=submit]');
    expect(await page.textContent('main')).toMatch(/may not record its use: grant it audit_console/);
    expect(await page.locator('main table').count()).toBe(0);
    const recorded = await withClient(
      db.url,
      async (c) =>
        (await c.query<{ n: number }>(`SELECT count(*)::int AS n FROM audit.audit_log WHERE source = 'console' AND session_user_name = 'app_login'`)).rows[0]!
          .n,
    );
    expect(recorded).toBe(0);
  });
});

describe('the console over TLS', () => {
  it('serves HTTPS with the given certificate, with HSTS, and a session cookie marked Secure', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'console-tls-'));
    const [cert, key] = [path.join(dir, 'cert.pem'), path.join(dir, 'key.pem')];
    const { execFileSync } = await import('node:child_process');
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-keyout',
        key,
        '-out',
        cert,
        '-days',
        '1',
        '-subj',
        '/CN=127.0.0.1',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
      ],
      { stdio: 'ignore' },
    );
    const base = await startConsole(archive, ['--tls-cert', cert, '--tls-key', key]);
    expect(base).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/$/);
    const https = await import('node:https');
    const ca = await readFile(cert);
    const res = await new Promise<import('node:http').IncomingMessage>((resolve, reject) => https.get(`${base}login`, { ca }, resolve).on('error', reject));
    res.resume();
    expect(res.statusCode).toBe(200);
    expect(res.headers['strict-transport-security']).toMatch(/max-age=\d+/);
    expect(res.headers['set-cookie']?.join('; ')).toMatch(/console_session=[^;]+;.*Secure/);
    // Plain HTTP on the same port gets no page.
    await expect(fetch(base.replace('https:', 'http:') + 'login')).rejects.toThrow();
  });
});

describe('OpenID Connect sign-in', () => {
  /**
   * The identity provider is oidc-provider (a certified OpenID Provider library) running in this
   * process with its development sign-in pages: no real provider is reachable here, and this one
   * speaks the same protocol (discovery, authorization code with PKCE, ID token, userinfo).
   */
  let provider: import('node:http').Server;
  let issuer: string;

  const freePort = async () => {
    const { createServer } = await import('node:net');
    const s = createServer();
    await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
    const port = (s.address() as { port: number }).port;
    await new Promise((resolve) => s.close(resolve));
    return port;
  };

  afterAll(() => provider?.close());

  it('signs a person in through the provider, with the role their group gives; a person in no admitted group is refused', async () => {
    const consolePort = await freePort();
    const providerPort = await freePort();
    issuer = `http://127.0.0.1:${providerPort}`;
    const { default: Provider } = await import('oidc-provider');
    const groups: Record<string, string[]> = { olivia: ['compliance'], walt: ['billing'] };
    const oidc = new Provider(issuer, {
      clients: [
        {
          client_id: 'audit-console',
          client_secret: 'a-long-client-secret-for-the-test-provider',
          redirect_uris: [`http://127.0.0.1:${consolePort}/oidc/callback`],
          grant_types: ['authorization_code'],
          response_types: ['code'],
        },
      ],
      claims: { openid: ['sub'], email: ['email'], groups: ['groups'] },
      findAccount: (_ctx: unknown, id: string) => ({
        accountId: id,
        claims: () => ({ sub: id, email: `${id}@clinic.example`, groups: groups[id] ?? [] }),
      }),
      cookies: { keys: ['test-provider-cookie-key'] },
      pkce: { required: () => true },
    });
    provider = oidc.listen(providerPort);
    const base = await startConsole(
      archive,
      [
        '--listen',
        `127.0.0.1:${consolePort}`,
        '--oidc-issuer',
        issuer,
        '--oidc-client-id',
        'audit-console',
        '--oidc-investigators',
        'compliance',
        '--oidc-viewers',
        'front-desk',
      ],
      { AUDIT_CONSOLE_OIDC_CLIENT_SECRET: 'a-long-client-secret-for-the-test-provider' },
    );
    expect(base).toBe(`http://127.0.0.1:${consolePort}/`);

    const viaProvider = async (who: string) => {
      const page = await (await browser.newContext()).newPage();
      await page.goto(`${base}login`);
      await page.click(`button:text("Sign in with 127.0.0.1:${providerPort}")`);
      await page.fill('input[name=login]', who);
      await page.fill('input[name=password]', 'anything');
      await page.click('button[type=submit]');
      // The provider asks once to share the claims with the console.
      if (page.url().startsWith(issuer)) await page.click('button[type=submit]');
      await page.waitForURL((u) => u.href.startsWith(base));
      return page;
    };
    const olivia = await viaProvider('olivia');
    await statusOf(olivia, base);
    expect(await olivia.textContent('nav button')).toBe('Sign out olivia@clinic.example (investigator)');
    const walt = await viaProvider('walt');
    expect(await walt.textContent('main')).toMatch(/walt@clinic\.example signed in at 127\.0\.0\.1:\d+, but is in none of the groups this console admits/);
    expect((await walt.goto(base))!.url()).toBe(`${base}login`);
  });
});

describe('the console on a tampered archive', () => {
  it('shows the finding on the status page, and says its use is not recorded without a database', async () => {
    const copy = await tempArchiveDir();
    await cp(archive, copy, { recursive: true });
    const dataDir = path.join(copy, 'data');
    const files: string[] = [];
    for (const d of await readdir(dataDir, { recursive: true, withFileTypes: true })) if (d.isFile()) files.push(path.join(d.parentPath, d.name));
    const victim = files.sort()[Math.floor(files.length / 2)]!;
    const bytes = await readFile(victim);
    bytes[bytes.length - 12] = bytes[bytes.length - 12]! ^ 0xff;
    await writeFile(victim, bytes);
    const base = await startConsole(copy);
    const page = await browser.newPage();
    await signIn(page, base, 'ivy');
    await statusOf(page, base);
    expect(await page.textContent('#verdict')).toMatch(/^\d+ findings?$/);
    expect(await page.textContent('ul.findings')).toContain(path.relative(copy, victim));
    expect(await page.textContent('p.warning')).toMatch(/This console is not recording its use/);
  });
});
