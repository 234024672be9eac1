import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { Pipeline } from '../../src/ship/pipeline.js';
import { EMPTY_HEAD } from '../../src/ship/resume.js';
import { createMetrics } from '../../src/ship/metrics.js';
import { createLogger } from '../../src/log.js';
import { keyIdOf, type SigningKey } from '../../src/seal/keys.js';
import type { ArchiveObject, Receipt, Sink } from '../../src/sink/sink.js';
import type { Lsn } from '../../src/source/lsn.js';
import { AUDIT_LOG } from '../../src/source/audit-stream.js';

/**
 * The acknowledgement rules of the pipeline, driven with synthetic stream events and a sink whose
 * every PUT waits until the test lets it finish: no database, no storage, milliseconds each.
 */
const lsn = (n: number) => BigInt(n) as Lsn;

class HeldSink implements Sink {
  readonly puts: { key: string; release: () => void; fail: (e: Error) => void }[] = [];
  readonly stored: string[] = [];
  readonly bodies = new Map<string, Buffer>();
  /** each record's op, position and id (a read's row id), in the order the files were put */
  positions(): [string, string, number, string | null][] {
    return this.records().map((r) => [r.op, r.lsn, r.idx, (r.op === 'read' ? r.row_id : r.id) ?? null]);
  }
  /** the records of every data file put, in the order they were put */
  records(): { op: string; lsn: string; idx: number; id?: string; row_id?: string }[] {
    return [...this.bodies.entries()]
      .filter(([k]) => k.startsWith('data/'))
      .flatMap(([, b]) => gunzipSync(b).toString('utf8').trimEnd().split('\n'))
      .map((l) => JSON.parse(l) as { op: string; lsn: string; idx: number; id?: string; row_id?: string });
  }
  put(obj: ArchiveObject): Promise<Receipt> {
    this.bodies.set(obj.key, obj.body);
    return new Promise((resolve, reject) => {
      this.puts.push({
        key: obj.key,
        release: () => {
          this.stored.push(obj.key);
          resolve({ key: obj.key, bytes: obj.body.length });
        },
        fail: reject,
      });
    });
  }
  /** Let the oldest waiting PUT whose key matches finish. */
  async release(match: RegExp): Promise<string> {
    for (let i = 0; i < 400; i++) {
      // up to 2 s: a loaded machine may take a while to issue the next PUT
      const idx = this.puts.findIndex((p) => match.test(p.key));
      if (idx >= 0) {
        const [p] = this.puts.splice(idx, 1);
        p!.release();
        await settle();
        return p!.key;
      }
      await settle();
    }
    throw new Error(`no PUT matching ${match} is waiting (waiting: ${this.puts.map((p) => p.key).join(', ') || 'none'})`);
  }
}

const settle = () => new Promise((r) => setTimeout(r, 5));

function signingKey(): SigningKey {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return { keyId: keyIdOf(publicKey), privateKey, publicKey };
}

let pipeline: Pipeline | null = null;
afterEach(() => {
  pipeline?.close();
  pipeline = null;
});

function setup(opts: { maxRecords?: number; maxInflightBytes?: number; heartbeatMs?: number } = {}) {
  const sink = new HeldSink();
  const confirmed: Lsn[] = [];
  const flow = {
    paused: 0,
    resumed: 0,
    pause() {
      this.paused++;
    },
    resume() {
      this.resumed++;
    },
  };
  pipeline = new Pipeline(EMPTY_HEAD, {
    limits: { maxRecords: opts.maxRecords ?? 2, maxBytes: 1 << 20, maxAgeMs: 60_000 },
    maxInflightBytes: opts.maxInflightBytes ?? 64 << 20,
    heartbeatMs: opts.heartbeatMs ?? 3_600_000,
    source: { systemIdentifier: '7000000000000000001', timeline: 1, database: 'clinic', slot: 's' },
    key: signingKey(),
    sink,
    log: createLogger('silent'),
    metrics: createMetrics(),
    onStored: async () => undefined,
    commitOffset: (l) => confirmed.push(l),
  });
  pipeline.flow = flow;
  let id = 0;
  /** One committed transaction of `n` audit events, ending at `end`. */
  const tx = (commit: number, end: number, n: number, relation = AUDIT_LOG) => {
    pipeline!.onEvent({ type: 'begin', xid: commit, commitLsn: lsn(commit), commitTime: new Date('2026-11-28T10:00:00Z') });
    for (let i = 0; i < n; i++) {
      pipeline!.onEvent({
        type: 'change',
        op: 'insert',
        relation,
        old: null,
        row: {
          id: String(++id),
          occurred_at: '2026-11-28 10:00:00+00',
          source: 'trigger',
          action: 'INSERT',
          outcome: 'success',
          statement: randomBytes(300).toString('hex'),
        },
      }); // incompressible: bytes count
    }
    pipeline!.onEvent({ type: 'commit', commitLsn: lsn(commit), endLsn: lsn(end) });
  };
  return { sink, confirmed, flow, tx, p: pipeline };
}

describe('pipeline: how far the slot may advance', () => {
  it('never confirms past a file whose data or digest is not stored', async () => {
    const { sink, confirmed, tx } = setup();
    tx(100, 110, 2); // two records: the file is full and sealed
    await settle();
    expect(confirmed).toEqual([]);
    await sink.release(/^data\//);
    expect(confirmed).toEqual([]); // the data is stored, its digest is not
    await sink.release(/^digests\/000000000001/);
    expect(confirmed).toEqual([lsn(110)]);
  });

  it('stores digest N+1 only after digest N, whatever order the data objects finish in', async () => {
    const { sink, confirmed, tx } = setup();
    tx(100, 110, 2);
    tx(200, 210, 2);
    await settle();
    // File 2's data may go ahead of file 1's digest (store-ahead); its digest may not.
    await sink.release(/^data\/.*000000000002-/);
    await sink.release(/^data\/.*000000000001-/);
    expect(sink.puts.map((p) => p.key)).toEqual(['digests/000000000001.digest']);
    await sink.release(/^digests\/000000000001/);
    // Each commit arrived after its file was already sealed (full at its second record), so its end
    // is confirmed only once nothing sealed is left unstored: after file 2, and then the later one.
    expect(confirmed).toEqual([]);
    await sink.release(/^digests\/000000000002/);
    expect(sink.stored.filter((k) => k.startsWith('digests/'))).toEqual(['digests/000000000001.digest', 'digests/000000000002.digest']);
    expect(confirmed).toEqual([lsn(210)]);
  });

  it('a transaction with nothing to archive, seen while a file is being stored, is confirmed only after that file', async () => {
    const { sink, confirmed, tx } = setup();
    tx(100, 110, 2);
    tx(300, 310, 1, 'public.customers'); // not audit_log: nothing to archive, but its end is a position
    await settle();
    expect(confirmed).toEqual([]);
    await sink.release(/^data\//);
    await sink.release(/^digests\//);
    expect(confirmed.at(-1)).toBe(lsn(310));
    expect(confirmed.every((l, i) => i === 0 || l > confirmed[i - 1]!)).toBe(true); // never backwards
  });

  it('with nothing pending, such a transaction is confirmed at once', () => {
    const { confirmed, tx } = setup();
    tx(300, 310, 1, 'public.customers');
    expect(confirmed).toEqual([lsn(310)]);
  });

  it('pauses reading while more than --max-inflight-bytes are unstored, and resumes once storage catches up', async () => {
    const { sink, flow, tx, p } = setup({ maxInflightBytes: 1000, maxRecords: 2 });
    tx(100, 110, 2);
    tx(200, 210, 2);
    tx(300, 310, 2);
    await settle();
    expect(flow.paused).toBe(1);
    expect(flow.resumed).toBe(0);
    // Let every PUT finish as it comes (the next one is issued only after the one before, so wait for
    // the pipeline to be idle rather than for an empty list of waiting PUTs).
    for (let i = 0; i < 400 && !p.isIdle(); i++) {
      if (sink.puts.length > 0) await sink.release(/./);
      else await settle();
    }
    expect(p.isIdle()).toBe(true);
    expect(flow.resumed).toBe(1);
  });

  it('a keepalive moves the slot only while nothing is unstored', async () => {
    const { sink, confirmed, tx, p } = setup({ heartbeatMs: 0 });
    tx(100, 110, 1); // one record: the file stays open
    p.onKeepalive(lsn(150));
    expect(confirmed).toEqual([]); // a record is unstored
    p.onKeepalive(lsn(160));
    // The open file seals by age (--batch-max-age is 60 s here: not yet); drain seals it now.
    const drained = p.drain(Date.now() + 5000);
    await sink.release(/^data\//);
    await sink.release(/^digests\/000000000001/);
    expect(await drained).toBe(true);
    expect(confirmed).toEqual([lsn(110)]);
    expect(p.isIdle()).toBe(true);
  });

  it('a heartbeat records the last idle keepalive position and confirms nothing more by itself', async () => {
    const { sink, confirmed, p } = setup({ heartbeatMs: 0 });
    p.onKeepalive(lsn(400)); // idle: confirmed at once
    expect(confirmed).toEqual([lsn(400)]);
    const key = await sink.release(/^digests\/000000000001/); // the tick seals a heartbeat (a digest alone)
    expect(key).toBe('digests/000000000001.digest');
    expect(sink.stored).toEqual(['digests/000000000001.digest']);
    expect(p.head.fileSeq).toBe(1);
    const digest = JSON.parse(sink.bodies.get(key)!.toString('utf8').split('\n')[0]!) as { kind: string; ack_lsn: string }; // then its signature line
    expect(digest).toMatchObject({ kind: 'heartbeat', ack_lsn: '0/190' }); // 400
    expect(confirmed).toEqual([lsn(400)]);
  });

  it('--drain seals the open file as soon as the server has sent everything below its target', async () => {
    const { sink, confirmed, tx, p } = setup();
    p.acks.drainTo(lsn(200));
    tx(100, 110, 1);
    p.onKeepalive(lsn(150)); // not yet past the target: the file stays open
    await settle();
    expect(sink.puts).toEqual([]);
    p.onKeepalive(lsn(200));
    await sink.release(/^data\//);
    await sink.release(/^digests\//);
    expect(confirmed).toEqual([lsn(110)]);
    expect(p.acks.drained()).toBe(false); // 110 < 200: the next idle keepalive finishes it
    p.onKeepalive(lsn(210));
    expect(p.acks.drained()).toBe(true);
  });

  it('a storage failure that retrying cannot fix stops the pipeline (check() throws) without confirming', async () => {
    const { sink, confirmed, tx, p } = setup();
    tx(100, 110, 2);
    for (let i = 0; i < 3; i++) {
      for (let j = 0; j < 100 && sink.puts.length === 0; j++) await settle();
      sink.puts.shift()!.fail(Object.assign(new Error('denied'), { name: 'AccessDenied', $metadata: { httpStatusCode: 403 } }));
      await new Promise((r) => setTimeout(r, 450)); // the policy's first waits are at most 200 and 400 ms
    }
    expect(() => p.check()).toThrow(/failed 3 times and retrying cannot fix it: AccessDenied: the credentials may not do this/);
    expect(confirmed).toEqual([]);
  });
});

describe('IdSet (archived audit_log ids, for recovery)', () => {
  it('holds ids as numbers where they fit and as text beyond 2^53, answering for both', async () => {
    const { IdSet } = await import('../../src/ship/id-set.js');
    const ids = new IdSet();
    for (const id of ['1', '42', '9007199254740991', '9007199254740993', '0042']) ids.add(id);
    expect(['1', '42', '9007199254740991', '9007199254740993', '0042'].every((id) => ids.has(id))).toBe(true);
    expect(ids.has('43')).toBe(false);
    expect(ids.has('9007199254740992')).toBe(false); // the number 2^53+1 would round to it: text keeps them apart
    expect(ids.size).toBe(5);
  });

  it('keeps ids arriving out of order, with gaps and repeats, as runs: the same answers as a Set, memory by runs not ids', async () => {
    const { IdSet } = await import('../../src/ship/id-set.js');
    const ids = new IdSet();
    const truth = new Set<number>();
    let seed = 7;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    // 600k ids in commit order (blocks of interleaved transactions), 1 in 500 rolled back (a gap), some seen twice
    const order: number[] = [];
    for (let base = 1; base <= 600_000; base += 1000) {
      const block = Array.from({ length: 1000 }, (_, i) => base + i).filter(() => rand() > 0.002);
      block.sort(() => rand() - 0.5);
      order.push(...block, ...block.slice(0, 3));
    }
    for (const n of order) {
      ids.add(String(n));
      truth.add(n);
    }
    expect(ids.size).toBe(truth.size);
    for (let n = 0; n <= 600_001; n += 1) if (ids.has(String(n)) !== truth.has(n)) throw new Error(`differs at ${n}`);
    // one run per gap (about 1 in 500 ids), not one entry per id
    expect(ids.runs).toBeLessThan(truth.size / 200);
    expect(ids.runs).toBeGreaterThan(100);
  });
});

/** One audit_log insert as the stream hands it on. */
const auditInsert = (p: Pipeline, id: string) =>
  p.onEvent({
    type: 'change',
    op: 'insert',
    relation: AUDIT_LOG,
    old: null,
    row: { id, occurred_at: '2026-11-28 10:00:00+00', source: 'trigger', action: 'INSERT', outcome: 'success' },
  });

describe('pipeline: row reads (messages between transactions)', () => {
  const read = (k: string) =>
    Buffer.from(
      JSON.stringify({ s: 'clinic', t: 'notes', k, su: 'app_login', cu: 'app_login', au: null, ac: '7', at: '2026-11-28 10:00:00.250000', pid: 42, app: 'x' }),
    );

  it('a read stands at its own position and is confirmed at it (not past it) once its file is stored; a replay is not archived twice', async () => {
    const { sink, confirmed, p } = setup({ maxRecords: 1 });
    p.onEvent({ type: 'message', lsn: lsn(500), transactional: false, content: read('7') });
    expect(confirmed).toEqual([]);
    await sink.release(/^data\//);
    await sink.release(/^digests\/000000000001/);
    // The server skips after a restart every message that begins before the confirmed position, and
    // the next message begins where this one ends (its LSN): confirming 501 would lose it.
    expect(confirmed).toEqual([lsn(500)]);
    const line = sink.bodies.get(sink.stored.find((k) => k.startsWith('data/'))!)!;
    const record = JSON.parse(gunzipSync(line).toString('utf8').split('\n')[0]!) as Record<string, unknown>;
    expect(record).toMatchObject({
      seq: 1,
      lsn: '0/1F4',
      idx: -1,
      op: 'read',
      occurred_at: '2026-11-28 10:00:00.25+00',
      source: 'row-read',
      row_id: '7',
      app_customer_id: '7',
    });
    // The same message again (a reconnect resumes at the slot's position): already stored, only confirmed.
    p.onEvent({ type: 'message', lsn: lsn(500), transactional: false, content: read('7') });
    await settle();
    expect(sink.puts).toEqual([]);
    expect(p.head.position.recordSeq).toBe(1);
  });

  it('a stream that breaks inside a transaction starts the next one clean: a read sent again is not taken into the broken transaction', async () => {
    const { sink, p } = setup({ maxRecords: 3 });
    const change = (id: string) => auditInsert(p, id);
    const begin = () => p.onEvent({ type: 'begin', xid: 9, commitLsn: lsn(900), commitTime: new Date('2026-11-28T10:00:00Z') });
    p.onEvent({ type: 'message', lsn: lsn(800), transactional: false, content: read('7') });
    begin();
    change('1');
    // The connection drops inside the transaction; the server sends again from the slot's position:
    // the read, then the whole transaction.
    p.streamStarted();
    p.onEvent({ type: 'message', lsn: lsn(800), transactional: false, content: read('7') });
    begin();
    change('1');
    change('2');
    p.onEvent({ type: 'commit', commitLsn: lsn(900), endLsn: lsn(950) });
    await sink.release(/^data\//);
    await sink.release(/^digests\//);
    // Without the reset the second read became the transaction's second record and the real one was
    // skipped as already stored: a read twice, an event lost.
    expect(sink.positions()).toEqual([
      ['read', '0/320', -1, '7'],
      ['insert', '0/384', 0, '1'],
      ['insert', '0/384', 1, '2'],
    ]);
  });

  it('a transaction whose commit LSN is the LSN of the read before it keeps its first event', async () => {
    // PostgreSQL gives a message the LSN where its record ends; a commit record written right after
    // it begins there, so the transaction's commit LSN equals the read's (measured on PostgreSQL 15:
    // an INSERT, a read, COMMIT). At idx 0 the read took the transaction's first position and its
    // first event was skipped as already stored.
    const { sink, confirmed, p } = setup({ maxRecords: 3 }); // the read and both events: one file
    p.onEvent({ type: 'message', lsn: lsn(800), transactional: false, content: read('7') });
    p.onEvent({ type: 'begin', xid: 9, commitLsn: lsn(800), commitTime: new Date('2026-11-28T10:00:00Z') });
    for (const id of ['1', '2']) auditInsert(p, id);
    p.onEvent({ type: 'commit', commitLsn: lsn(800), endLsn: lsn(850) });
    await sink.release(/^data\//);
    await sink.release(/^digests\//);
    expect(sink.positions()).toEqual([
      ['read', '0/320', -1, '7'],
      ['insert', '0/320', 0, '1'],
      ['insert', '0/320', 1, '2'],
    ]);
    expect(confirmed.at(-1)).toEqual(lsn(850));
  });

  it("a backfill stands before the slot's consistent point: a transaction committing at the point keeps its first events", async () => {
    // Measured on PostgreSQL 15 under two concurrent writers: in 5 of 10 slot creations the first
    // streamed transaction's commit LSN was the consistent point. A backfill at the point itself took
    // positions 0..n there, and that transaction's first n + 2 events were skipped as already stored.
    const { sink, p } = setup({ maxRecords: 4 });
    const row = (id: string) => ({ id, occurred_at: '2026-11-28 09:00:00+00', source: 'trigger', action: 'INSERT', outcome: 'success' });
    await p.appendBackfill(lsn(800), 0, row('1'), 'initial');
    p.appendMarker(lsn(800), 1, 'backfill-complete', { rows: 1, backfill: 'initial' });
    p.onEvent({ type: 'begin', xid: 9, commitLsn: lsn(800), commitTime: new Date('2026-11-28T10:00:00Z') });
    for (const id of ['2', '3']) auditInsert(p, id);
    p.onEvent({ type: 'commit', commitLsn: lsn(800), endLsn: lsn(850) });
    await p.drain(Date.now() + 50).catch(() => undefined);
    await sink.release(/^data\//);
    await sink.release(/^digests\//);
    await sink.release(/^data\//);
    await sink.release(/^digests\//);
    expect(sink.positions()).toEqual([
      ['insert', '0/31F', 0, '1'],
      ['marker', '0/31F', 1, null],
      ['insert', '0/320', 0, '2'],
      ['insert', '0/320', 1, '3'],
    ]);
  });

  it('a malformed message is archived as such, never dropped', async () => {
    const { sink, p } = setup({ maxRecords: 1 });
    p.onEvent({ type: 'message', lsn: lsn(600), transactional: false, content: Buffer.from('not json') });
    await sink.release(/^data\//);
    const body = sink.bodies.get(sink.stored[0]!)!;
    expect(JSON.parse(gunzipSync(body).toString('utf8').split('\n')[0]!)).toMatchObject({ op: 'read', occurred_at: null, malformed: 'not json' });
  });
});
