import { describe, expect, it } from 'vitest';
import { Acknowledgements } from '../../src/ship/acknowledgements.js';
import type { Lsn } from '../../src/source/lsn.js';

/** The one place that decides how far the slot may advance, on its own: every rule, no I/O. */
const lsn = (n: number) => BigInt(n) as Lsn;

function tracker() {
  const flushed: Lsn[] = [];
  return { acks: new Acknowledgements((l) => flushed.push(l)), flushed };
}

describe('acknowledgements: how far the slot may advance', () => {
  it('a transaction whose records are in the open file is confirmed by that file, not by its end', () => {
    const { acks, flushed } = tracker();
    acks.transactionEnded(lsn(110), 'open-file');
    expect(flushed).toEqual([]);
    acks.fileStored(lsn(110), true);
    expect(flushed).toEqual([lsn(110)]);
  });

  it('a transaction with nothing to store is confirmed at once when nothing is pending, else after the files being stored', () => {
    const { acks, flushed } = tracker();
    acks.transactionEnded(lsn(50), 'nothing');
    expect(flushed).toEqual([lsn(50)]);
    acks.transactionEnded(lsn(310), 'storing');
    acks.transactionEnded(lsn(320), 'storing');
    expect(flushed).toEqual([lsn(50)]);
    acks.fileStored(lsn(110), false); // one of two files: the deferred end must wait for the other
    expect(flushed).toEqual([lsn(50), lsn(110)]);
    acks.fileStored(lsn(210), true);
    expect(flushed).toEqual([lsn(50), lsn(110), lsn(210), lsn(320)]);
    expect(acks.state.deferred).toBeNull();
  });

  it('a file that ends inside a transaction confirms nothing', () => {
    const { acks, flushed } = tracker();
    acks.fileStored(null, false);
    expect(flushed).toEqual([]);
  });

  it('a keepalive moves the slot only while nothing received is unstored, and is what a heartbeat records', () => {
    const { acks, flushed } = tracker();
    acks.keepalive(lsn(500), false);
    expect(flushed).toEqual([]);
    expect(acks.state.idlePosition).toBeNull();
    acks.keepalive(lsn(600), true);
    expect(flushed).toEqual([lsn(600)]);
    expect(acks.state.idlePosition).toBe(lsn(600));
  });

  it('never reports a position twice or backwards, and never below where streaming resumed', () => {
    const { acks, flushed } = tracker();
    expect(acks.resumeFrom(lsn(1000))).toBe(lsn(1000));
    acks.keepalive(lsn(900), true);
    acks.transactionEnded(lsn(1000), 'nothing');
    expect(flushed).toEqual([]);
    acks.fileStored(lsn(1200), true);
    acks.fileStored(lsn(1100), true);
    acks.keepalive(lsn(1200), true);
    expect(flushed).toEqual([lsn(1200)]);
    // A reconnect resumes from the slot's position or what this run confirmed, whichever is further.
    expect(acks.resumeFrom(lsn(1000))).toBe(lsn(1200));
    expect(acks.resumeFrom(null)).toBe(lsn(1200));
  });

  it('--drain is done once the WAL end it began at is confirmed', () => {
    const { acks } = tracker();
    expect(acks.drained()).toBe(false); // no drain asked
    acks.drainTo(lsn(700));
    acks.keepalive(lsn(650), true);
    expect(acks.drained()).toBe(false);
    acks.fileStored(lsn(700), true);
    expect(acks.drained()).toBe(true);
  });
});
