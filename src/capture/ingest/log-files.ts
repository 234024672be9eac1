import { createHash } from 'node:crypto';
import { open, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import { ConfigError, ServiceError } from '../../errors.js';
import { describePgError } from '../../db.js';

/**
 * Where ingest reads the server's csvlog: its directory (on the database host), or through SQL on
 * the ingester's own connection (anywhere; sql/migrations/010). The ingester sees files the same way
 * from both: a name, an identity, a size, and reads at an offset.
 */
export interface LogFile {
  name: string;
  /**
   * Who the file is, across renames and reuse of its name: `<device>:<inode>:<hash>` from the
   * directory, `sql:<name>:<hash>` through SQL (no inode there: PostgreSQL never renames its log
   * files); `<hash>` is of its first 64 bytes, which begin with a log time in milliseconds. A
   * position saved by one source is taken up by the other (ingester.ts, adoptSavedKeys).
   */
  key: string;
  size: number;
  mtimeMs: number;
  /**
   * Which server wrote it, when files of several are read together (Aurora's writer and readers:
   * rds-logs.ts); each server rotates its own files. Absent: the one server.
   */
  server?: string;
}

export interface LogReader {
  /**
   * `cut`: the bytes read end where the source cut a line short (RDS returns at most 1 MB of a
   * line and drops the rest: rds-logs.ts). The record open there never completes; the next byte
   * starts a new one. At the end of the bytes (none read), `cut` says the last line may have been
   * cut: if the file gets no more lines (it rotated), the listed size is out of reach. Files read
   * whole never say it.
   */
  read(buf: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number; cut?: boolean }>;
  close(): Promise<void>;
}

export interface LogFiles {
  list(): Promise<LogFile[]>;
  open(file: LogFile): Promise<LogReader>;
}

/** The server's log formats ingest reads: csvlog (`.csv` files) and, from PostgreSQL 15, jsonlog (`.json`). */
export type LogFormat = 'csvlog' | 'jsonlog';
export const EXTENSION: Record<LogFormat, string> = { csvlog: '.csv', jsonlog: '.json' };

/**
 * How a record of each format starts: its log time, `2026-11-28 19:59:21.560 UTC,` in csvlog,
 * `{"timestamp":"2026-11-28 19:59:21.560 UTC",` in jsonlog. Tested on the first 64 bytes after a
 * newline, to find where records start without reading them.
 */
export const RECORD_START: Record<LogFormat, RegExp> = {
  csvlog: /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3} [^,\n]{1,40},/,
  jsonlog: /^\{"timestamp":"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3} /,
};

/** A file is known by its first bytes: a rotated name reused for a new file is a new file. */
export const IDENTITY_BYTES = 64;

const identity = (head: Buffer) => createHash('sha256').update(head).digest('hex').slice(0, 32);

/** The identity hash of a key from either source (see LogFile.key). */
export const identityOf = (key: string): string => key.slice(key.lastIndexOf(':') + 1);

const byAge = (a: LogFile, b: LogFile) => a.mtimeMs - b.mtimeMs || a.name.localeCompare(b.name);

/** The log directory, read on this host (ingest --log-dir). */
export function directoryLogs(dir: string, format: LogFormat = 'csvlog'): LogFiles {
  return {
    async list() {
      let names: string[];
      try {
        names = (await readdir(dir)).filter((n) => n.endsWith(EXTENSION[format]));
      } catch (err) {
        throw new ConfigError(
          `--log-dir (PGAUDIT_LOG_DIR) ${dir} cannot be read: ${(err as NodeJS.ErrnoException).code}; ` +
            `point it at the server's log_directory with log_destination including '${format}', or read it over SQL: --log-source sql`,
        );
      }
      const files: LogFile[] = [];
      for (const name of names) {
        const full = path.join(dir, name);
        const st = await stat(full).catch(() => null);
        if (!st?.isFile() || st.size < IDENTITY_BYTES) continue; // not yet identifiable: no complete line either
        const fh = await open(full, 'r');
        try {
          const head = Buffer.alloc(IDENTITY_BYTES);
          await fh.read(head, 0, IDENTITY_BYTES, 0);
          files.push({ name, key: `${st.dev}:${st.ino}:${identity(head)}`, size: st.size, mtimeMs: st.mtimeMs });
        } finally {
          await fh.close();
        }
      }
      return files.sort(byAge);
    },
    open: (file) => open(path.join(dir, file.name), 'r'),
  };
}

/**
 * The log directory read through the ingester's own connection: `audit.log_files()` and
 * `audit.read_log()` (sql/migrations/010), which read csvlog files of the server's log_directory
 * and nothing else, so the ingester needs no access to the host, nor the server's file functions.
 */
export function sqlLogs(client: pg.Client, format: LogFormat = 'csvlog'): LogFiles {
  const ask = async <R extends pg.QueryResultRow>(sql: string, params: unknown[]): Promise<pg.QueryResult<R>> => {
    try {
      return await client.query<R>(sql, params);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === '42883' || code === '3F000')
        throw new ServiceError(
          '--log-source sql: the audit schema is older than this ingester (no audit.read_log()); run `pg-audit-shipper init` to upgrade it',
        );
      if (code === '42501')
        throw new ServiceError(`--log-source sql: the ingester's login may not read the server's log (${describePgError(err)}); grant it audit_ingester`);
      throw err;
    }
  };
  const head = async (name: string): Promise<Buffer | null> =>
    (await ask<{ b: Buffer | null }>('SELECT audit.read_log($1, 0, $2) AS b', [name, IDENTITY_BYTES])).rows[0]!.b;
  return {
    async list() {
      const listed = await ask<{ name: string; size: string; mtime: number }>(
        'SELECT name, size::text AS size, extract(epoch FROM modification) * 1000 AS mtime FROM audit.log_files()',
        [],
      );
      const files: LogFile[] = [];
      for (const f of listed.rows) {
        if (!f.name.endsWith(EXTENSION[format]) || Number(f.size) < IDENTITY_BYTES) continue;
        const b = await head(f.name);
        if (!b || b.length < IDENTITY_BYTES) continue; // removed since it was listed
        files.push({ name: f.name, key: `sql:${f.name}:${identity(b)}`, size: Number(f.size), mtimeMs: Number(f.mtime) });
      }
      return files.sort(byAge);
    },
    async open(file) {
      return {
        async read(buf, offset, length, position) {
          const b = (await ask<{ b: Buffer | null }>('SELECT audit.read_log($1, $2, $3) AS b', [file.name, position, length])).rows[0]!.b;
          if (!b) return { bytesRead: 0 }; // gone (rotated away and removed): nothing more to read
          b.copy(buf, offset);
          return { bytesRead: b.length };
        },
        close: () => Promise.resolve(),
      };
    },
  };
}
