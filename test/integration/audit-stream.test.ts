import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.js';
import { AuditStream, type StreamConsumer, type StreamEvent } from '../../src/source/audit-stream.js';
import { formatLsn } from '../../src/source/lsn.js';
import { freshDatabase, withClient } from '../helpers/db.js';

/**
 * The stream reads data messages itself once streaming has started, and through the replication
 * library if the library's connection does not look as expected. Both paths must hand the
 * consumer the same events: this streams the same WAL through each, from a slot apiece.
 */
describe('the replication stream, read directly and through the library', () => {
  it('hands the consumer the same events, byte for byte', async () => {
    const db = await freshDatabase('stream');
    await withClient(db.url, async (c) => {
      for (const slot of ['s_direct', 's_library']) await c.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [slot]);
      await c.query(`INSERT INTO customers (id, full_name) SELECT g, 'p' || g FROM generate_series(1, 2500) g`);
      // Text that is not plain ASCII, in a column the audit row carries.
      await c.query(`SET app.user_id = 'Zoë "quoted" \\ back	slash'`);
      await c.query(`INSERT INTO customers (id, full_name) VALUES (9001, 'x')`);
      // A superuser can switch the append-only trigger off; both paths must see what happened.
      await c.query(`SET session_replication_role = replica`);
      await c.query(`UPDATE audit.audit_log SET session_user_name = 'nobody' WHERE row_id = '7'`);
      await c.query(`DELETE FROM audit.audit_log WHERE row_id = '8'`);
    });

    const direct = await collect(db.url, 's_direct', false);
    const library = await collect(db.url, 's_library', true);

    expect(direct.filter((e) => e.startsWith('audit-insert'))).toHaveLength(2501);
    expect(direct.filter((e) => e.startsWith('change'))).toEqual([
      expect.stringMatching(/^change update audit\.audit_log .*"session_user_name":"nobody"/),
      expect.stringMatching(/^change delete audit\.audit_log null .*"row_id":"8"/),
    ]);
    expect(direct.some((e) => e.includes('Zoë'))).toBe(true);
    expect(library).toEqual(direct);
  });
});

/**
 * Every event of `slot` until the commit of the DELETE above, spelled out (an insert's tuple as its
 * bytes, which are valid only during the call).
 */
async function collect(url: string, slot: string, readThroughLibrary: boolean): Promise<string[]> {
  const stream = new AuditStream({ connectionString: url }, slot, createLogger('silent'), { readThroughLibrary });
  const events: string[] = [];
  let deleted = false;
  let done = false;
  const consumer: StreamConsumer = {
    onEvent: (e: StreamEvent) => {
      events.push(describeEvent(e));
      if (e.type === 'change' && e.op === 'delete') deleted = true;
      if (e.type === 'commit' && deleted) done = true;
    },
    onKeepalive: () => undefined,
  };
  const failed = stream.run(consumer, null).then(
    () => new Error('the stream ended early'),
    (err: Error) => err,
  );
  for (let i = 0; i < 300 && !done; i++) {
    const err = await Promise.race([failed, new Promise<null>((r) => setTimeout(() => r(null), 50))]);
    if (err) throw err;
  }
  await stream.stop();
  expect(done, `${slot}: streamed up to the last commit`).toBe(true);
  expect(stream.readsDirectly, `${slot}: which path was read`).toBe(!readThroughLibrary);
  return events;
}

function describeEvent(e: StreamEvent): string {
  switch (e.type) {
    case 'begin':
      return `begin ${formatLsn(e.commitLsn)} ${e.commitTime.toISOString()}`;
    case 'commit':
      return `commit ${formatLsn(e.commitLsn)} ${formatLsn(e.endLsn)}`;
    case 'audit-insert':
      return `audit-insert ${e.tuple.buf.subarray(e.tuple.offset).toString('utf8')}`;
    case 'change':
      return `change ${e.op} ${e.relation} ${JSON.stringify(e.row)} ${JSON.stringify(e.old)}`;
    case 'message':
      return `message ${formatLsn(e.lsn)} ${e.transactional} ${e.content.toString('utf8')}`;
  }
}
