import type pg from 'pg';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dropCreatedSlots, freshDatabase, urlFor, withClient } from '../helpers/db.js';
import { runCli, startCli, waitFor } from '../helpers/cli.js';
import { makeKeys, readArchive, shipArgs, tempArchiveDir, type TestKeys } from '../helpers/archive.js';

/**
 * Roles the database cannot stop: a CREATEROLE holder (PostgreSQL 15) grants itself audit_owner
 * and switches capture off from inside the audit schema. Nothing refuses it; the archive shows it:
 * the shipper attests the capture configuration (at start, on a change, once per interval) and
 * verify reports every change between two attestations, and a stretch without one.
 */
let keys: TestKeys;
let mallory: string;

beforeAll(async () => {
  keys = await makeKeys();
  mallory = `mallory_${Math.random().toString(36).slice(2, 8)}`;
  await withClient(urlFor('postgres'), (c) => c.query(`CREATE ROLE ${mallory} LOGIN CREATEROLE`));
});
afterAll(dropCreatedSlots);

/** A shipper that checks the configuration every 200 ms and promises an attestation every 2 s. */
function startShipper(db: { name: string }, archive: string) {
  return startCli(
    shipArgs({ archive: `file://${archive}`, keys, extra: ['--slot', `s_${db.name}`, '--attest-check-interval', '200ms', '--heartbeat-interval', '2s'] }),
    { DATABASE_URL: urlFor(db.name, 'ship_login') },
  );
}

async function attestations(archive: string): Promise<number> {
  const { records } = await readArchive(archive, keys.keys).catch(() => ({ records: [] as { source?: unknown }[] }));
  return records.filter((r) => r.source === 'attest').length;
}

async function verifyJson(archive: string): Promise<{ code: number | null; findings: { code: string; id?: string; message: string }[] }> {
  const r = await runCli(['verify', '--archive', `file://${archive}`, '--verify-key', keys.verifyKey, '--json']);
  return { code: r.code, findings: r.stdout ? (JSON.parse(r.stdout) as { findings: { code: string; message: string }[] }).findings : [] };
}

/**
 * A fresh database with a running shipper whose first attestation is archived, and the attacker:
 * `asAuditOwner` runs statements as mallory after it granted itself audit_owner (CREATEROLE lets it).
 */
async function attackedDatabase(label: string) {
  const db = await freshDatabase(label);
  const archive = await tempArchiveDir();
  const shipper = startShipper(db, archive);
  const done = waitFor(shipper);
  await expect.poll(() => attestations(archive), { timeout: 10_000, interval: 100 }).toBeGreaterThanOrEqual(1);
  const asAuditOwner = (fn: (c: pg.Client) => Promise<void>) =>
    withClient(urlFor(db.name, mallory), async (c) => {
      await c.query(`GRANT audit_owner TO ${mallory}`);
      await c.query('SET ROLE audit_owner');
      await fn(c);
    });
  const stop = async () => {
    shipper.kill('SIGTERM');
    expect((await done).code).toBe(0);
  };
  return { db, archive, asAuditOwner, stop };
}

/** Wait for the attestation after the attack, stop the shipper: verify reports exactly one capture change. */
async function theOneChange(archive: string, stop: () => Promise<void>) {
  await expect.poll(() => attestations(archive), { timeout: 10_000, interval: 100 }).toBeGreaterThanOrEqual(2);
  await stop();
  const { code, findings } = await verifyJson(archive);
  expect(code).toBe(1);
  const changed = findings.filter((f) => f.code === 'capture-changed');
  expect(changed).toHaveLength(1);
  return changed;
}

describe('the capture configuration, attested in the chain', () => {
  it('a CREATEROLE holder who makes itself audit_owner, replaces the row trigger with a no-op, takes a table off the list and grants itself pg_execute_server_program is reported, with the window', async () => {
    const { db, archive, asAuditOwner, stop } = await attackedDatabase('attest_noop');
    await asAuditOwner(async (c) => {
      await c.query(`CREATE OR REPLACE FUNCTION audit.capture_row_change() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$`);
      await c.query(`DELETE FROM audit.protected_tables WHERE table_name = 'customers'`); // the ingester stops picking its reads
      await c.query('RESET ROLE');
      await c.query(`GRANT pg_execute_server_program TO ${mallory}`); // then it could edit the server's log files
    });
    await withClient(db.url, async (c) => {
      await c.query(`INSERT INTO customers (id, full_name) VALUES (42, 'unseen')`);
      // The attack worked: the write left no trigger event.
      expect((await c.query(`SELECT count(*)::int AS n FROM audit.audit_log WHERE source = 'trigger' AND row_id = '42'`)).rows[0].n).toBe(0);
    });
    const changed = await theOneChange(archive, stop);
    expect(changed[0]!.message).toMatch(/^the capture configuration changed between \S+ \S+ and \S+ \S+ \(attestations \d+ and \d+\): /);
    expect(changed[0]!.message).toContain('functions["audit.capture_row_change()"]: "audit_owner ');
    expect(changed[0]!.message).toContain(`roles.members.audit_owner: +"${mallory}"`);
    expect(changed[0]!.message).toContain(`roles.members.pg_execute_server_program: +"${mallory}"`);
    expect(changed[0]!.message).toContain('tables["public.customers"]: removed');
    // The write itself left no trigger event: the finding is the only trace, and it is acknowledgeable.
    expect(changed[0]!.id).toMatch(/^record:\d+$/);
    // query says it beside its answer: events of that window may be missing from it.
    const q = await runCli(['query', '--archive', `file://${archive}`, '--verify-key', keys.verifyKey, '--format', 'json']);
    expect(q.stderr).toMatch(/note: .*record:\d+: the capture configuration changed between .*events in that window may be missing/);
  });

  it('a superuser who switches the DDL guard off and drops the read-context policy (reads no longer attributed) is reported', async () => {
    const { db, archive, stop } = await attackedDatabase('attest_policy');
    await withClient(db.url, async (c) => {
      await c.query('ALTER EVENT TRIGGER audit_guard_protected_ddl DISABLE');
      await c.query('DROP POLICY audit_read_context ON customers');
    });
    const changed = await theOneChange(archive, stop);
    expect(changed[0]!.message).toContain(
      'tables["public.customers"].row_security.policy: "restrictive * ( SELECT audit.read_context() AS read_context) / ( SELECT audit.read_context() AS read_context)" -> null',
    );
    expect(changed[0]!.message).toContain('event_triggers.audit_guard_protected_ddl.enabled: "A" -> "D"');
  });

  it('a superuser who gives pg_logical_emit_message back to PUBLIC (an application could then write made-up row reads) is reported', async () => {
    const { db, archive, stop } = await attackedDatabase('attest_emit');
    await withClient(db.url, (c) => c.query('GRANT EXECUTE ON FUNCTION pg_logical_emit_message(boolean, text, text) TO PUBLIC'));
    const changed = await theOneChange(archive, stop);
    expect(changed[0]!.message).toMatch(/emit_message\["pg_logical_emit_message\(boolean,text,text\)"\]: "\{[^"]*" -> "\{[^"]*=X\/[^"]*\}"/);
  });

  it('swapping audit_log for an unpublished decoy stops the attestations reaching the archive: verify reports the stretch without one', async () => {
    const { archive, asAuditOwner, stop } = await attackedDatabase('attest_decoy');
    await asAuditOwner(async (c) => {
      await c.query('ALTER TABLE audit.audit_log RENAME TO audit_log_kept');
      await c.query('CREATE TABLE audit.audit_log (LIKE audit.audit_log_kept INCLUDING ALL)');
    });
    // Heartbeats go on (the slot is idle), attestations do not arrive: wait past twice the 2 s interval.
    await sleep(6000);
    await stop();
    const { code, findings } = await verifyJson(archive);
    expect(code).toBe(1);
    expect(findings.map((f) => f.code)).toContain('attestation-gap');
    expect(findings.find((f) => f.code === 'attestation-gap')!.message).toMatch(
      /^no attestation of the capture configuration since .* though the archive goes on until /,
    );
  });
});
