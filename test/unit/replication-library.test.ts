import { EventEmitter } from 'node:events';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { libraryDataListener } from '../../src/source/replication-library.js';

// The stream reads data messages itself only when the replication library's connection looks as
// expected; otherwise the library's own path stays in use (src/source/replication-library.ts).
describe("which CopyData listener is the replication library's", () => {
  const pgClientListener = () => {
    // The real thing: pg's Client binds its handler when it attaches to a connection.
    const client = new pg.Client();
    return (client as unknown as { _handleCopyData: (m: unknown) => void })._handleCopyData.bind(client);
  };

  it("is the one listener beside pg's own", () => {
    const conn = new EventEmitter();
    const library = (_m: { chunk: Buffer }) => undefined;
    conn.on('copyData', pgClientListener());
    conn.on('copyData', library);
    expect(libraryDataListener(conn)).toBe(library);
  });

  it('is none when there are more candidates or none at all', () => {
    const two = new EventEmitter();
    two.on('copyData', pgClientListener());
    two.on('copyData', () => undefined);
    two.on('copyData', () => undefined);
    expect(libraryDataListener(two)).toBeNull();
    const onlyPg = new EventEmitter();
    onlyPg.on('copyData', pgClientListener());
    expect(libraryDataListener(onlyPg)).toBeNull();
  });
});
