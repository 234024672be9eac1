import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { ReconnectingClient } from '../../src/db.js';
import { ServiceError } from '../../src/errors.js';

/** A stand-in for pg.Client that records how many queries it was given at once. */
class StubClient extends EventEmitter {
  inFlight = 0;
  most = 0;
  readonly order: string[] = [];
  async query(text: string): Promise<pg.QueryResult> {
    this.inFlight++;
    this.most = Math.max(this.most, this.inFlight);
    this.order.push(text);
    await sleep(text === 'slow' ? 20 : 1);
    this.inFlight--;
    if (text === 'fails') throw Object.assign(new Error('syntax error'), { code: '42601' });
    return { rows: [{ text }], rowCount: 1 } as unknown as pg.QueryResult;
  }
  end(): Promise<void> {
    return Promise.resolve();
  }
}

describe('ReconnectingClient', () => {
  it('gives the connection one query at a time, in the order asked, whatever the callers do at once', async () => {
    const stub = new StubClient();
    const db = new ReconnectingClient('postgresql://unused', 'test', stub as unknown as pg.Client);
    const texts = ['slow', 'a', 'fails', 'b', 'slow', 'c'];
    const results = await Promise.allSettled(texts.map((t) => db.query(t)));
    expect(stub.most).toBe(1);
    expect(stub.order).toEqual(texts);
    // A query's error is its caller's alone: the ones after it run and answer.
    expect(results.map((r) => (r.status === 'fulfilled' ? (r.value.rows[0] as { text: string }).text : 'rejected'))).toEqual([
      'slow',
      'a',
      'rejected',
      'b',
      'slow',
      'c',
    ]);
  });

  it('a connection lost for another reason, then refused because the server is shutting down: heard as a shutdown', async () => {
    const stub = new StubClient();
    const lost: { reason: string; shutdown: boolean }[] = [];
    let opens = 0;
    const db = new ReconnectingClient(
      'postgresql://unused',
      'test',
      stub as unknown as pg.Client,
      { onLost: (reason, shutdown) => void lost.push({ reason, shutdown }) },
      async () => {
        opens++;
        // as connect() reports it: the server's SQLSTATE behind its one-line message
        throw new ServiceError('cannot connect to PostgreSQL at postgresql://unused: the database system is shutting down (57P03)', {
          cause: Object.assign(new Error('the database system is shutting down'), { code: '57P03' }),
        });
      },
    );
    stub.emit('end'); // the socket closed without a word (no shutdown code)
    expect(lost).toEqual([{ reason: 'the connection was closed', shutdown: false }]);
    await expect(db.query('select 1')).rejects.toThrow(/shutting down/);
    expect(opens).toBe(1);
    // The shipper lets go of its replication connection on this (shipper.ts): the walsender would hold the shutdown up.
    expect(lost[1]).toEqual({ reason: 'the database system is shutting down (57P03)', shutdown: true });
    // Any other refusal is no shutdown.
    const other = new ReconnectingClient(
      'postgresql://unused',
      'test',
      new StubClient() as unknown as pg.Client,
      {
        onLost: (reason, shutdown) => void lost.push({ reason, shutdown }),
      },
      async () => {
        throw new ServiceError('cannot connect', { cause: Object.assign(new Error('connection refused'), { code: 'ECONNREFUSED' }) });
      },
    );
    await other.end();
    await expect(other.query('select 1')).rejects.toThrow(/cannot connect/);
    expect(lost.slice(2)).toEqual([]);
  });

  it("a query in flight when the server shuts down: its 57P01 is heard as a shutdown even after the socket's end was", async () => {
    const lost: { reason: string; shutdown: boolean }[] = [];
    let fail: (err: Error) => void = () => undefined;
    const client = Object.assign(new EventEmitter(), {
      query: () => new Promise((_, reject) => (fail = reject)),
      end: () => Promise.resolve(),
    });
    const db = new ReconnectingClient('postgresql://unused', 'test', client as unknown as pg.Client, {
      onLost: (reason, shutdown) => void lost.push({ reason, shutdown }),
    });
    const q = db.query('select pg_sleep(10)');
    await sleep(1);
    // The order Node can deliver them in: the stream's end (a nextTick), then the query's rejection (a promise reaction).
    client.emit('end');
    fail(Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' }));
    await expect(q).rejects.toThrow(/administrator command/);
    expect(lost).toEqual([
      { reason: 'the connection was closed', shutdown: false },
      { reason: 'terminating connection due to administrator command (57P01)', shutdown: true },
    ]);
    // told once: another shutdown error on the same connection adds nothing
    client.emit('error', Object.assign(new Error('again'), { code: '57P01' }));
    expect(lost.length).toBe(2);
  });
});
