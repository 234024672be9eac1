import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { ReconnectingClient } from '../../src/db.js';

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
});
