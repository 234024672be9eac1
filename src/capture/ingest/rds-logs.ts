import { createHash } from 'node:crypto';
import { ServiceError } from '../../errors.js';
import { EXTENSION, IDENTITY_BYTES, RECORD_START, type LogFile, type LogFiles, type LogFormat } from './log-files.js';

/**
 * Amazon RDS / Aurora PostgreSQL's log files through the RDS API (ingest --log-source rds):
 * DescribeDBLogFiles lists them, DownloadDBLogFilePortion reads them a portion at a time, from an
 * opaque marker. The database writes csvlog there when its parameter group has
 * log_destination = csvlog (RDS keeps the files 3 days by default, at most 7: rds.log_retention_period).
 */
export interface RdsLogApi {
  listFiles(): Promise<{ name: string; size: number; lastWritten: number }[]>;
  /** up to `lines` lines from `marker` ('0': the beginning); the API cuts a portion at 1 MB */
  portion(name: string, marker: string, lines: number): Promise<{ data: string; marker: string; pending: boolean }>;
}

/** DownloadDBLogFilePortion returns at most 1 MB: a portion this long may have been cut. */
export const PORTION_LIMIT = 1024 * 1024;
const LINES = 2000;

/**
 * What the API puts after the bytes of a portion it cut, as its users report it (the API reference
 * is silent): aws/aws-cli#3079 shows a cut portion's data ending in
 * `\n [Your log message was truncated]\n`, aws/aws-sdk#20 finds ` [Your log message was truncated]`
 * in downloaded files, and rds-pgbadger and pganalyze's collector look for it to tell a cut.
 */
export const TRUNCATION_NOTICE = '[Your log message was truncated]';
const NOTICE = Buffer.from(TRUNCATION_NOTICE);

/**
 * A portion's data without the API's truncation notice at its end (and the space and newline the
 * reports show around it), and whether it had one. Only at the end: a csvlog line always ends in a
 * field the server writes (query_id, or the quoted backend type before PostgreSQL 14), and a portion
 * that is not cut ends at a line's end, so an application cannot put the notice where it is looked for.
 * A newline just before the notice is taken for the API's: were it the file's (a newline inside a
 * quoted statement, right at the cut), the statement loses that one character.
 */
export function withoutNotice(data: Buffer): { bytes: Buffer; notice: boolean } {
  let end = data.length;
  if (end > 0 && data[end - 1] === 0x0a) end--;
  if (end < NOTICE.length || !data.subarray(end - NOTICE.length, end).equals(NOTICE)) return { bytes: data, notice: false };
  end -= NOTICE.length;
  if (end > 0 && data[end - 1] === 0x20) end--;
  if (end > 0 && data[end - 1] === 0x0a) end--;
  return { bytes: data.subarray(0, end), notice: true };
}

/** The RDS API through the AWS SDK (region, credentials and endpoint as the SDK finds them: AWS_REGION, AWS_ENDPOINT_URL_RDS, ...). */
export function rdsLogApi(instance: string): RdsLogApi {
  type Sdk = typeof import('@aws-sdk/client-rds');
  let sdk: Promise<{ m: Sdk; client: InstanceType<Sdk['RDSClient']> }> | null = null;
  const connect = () => (sdk ??= import('@aws-sdk/client-rds').then((m) => ({ m, client: new m.RDSClient({ maxAttempts: 6 }) })));
  const failed = (what: string, err: unknown): ServiceError =>
    new ServiceError(
      `--log-source rds: ${what} of DB instance ${instance} failed: ${(err as Error).name ?? ''} ${(err as Error).message}`.replace(/\s+/g, ' '),
    );
  return {
    async listFiles() {
      const { m, client } = await connect();
      const out: { name: string; size: number; lastWritten: number }[] = [];
      let marker: string | undefined;
      do {
        const r = await client.send(new m.DescribeDBLogFilesCommand({ DBInstanceIdentifier: instance, Marker: marker })).catch((err: unknown) => {
          throw failed('listing the log files', err);
        });
        for (const f of r.DescribeDBLogFiles ?? []) {
          if (f.LogFileName) out.push({ name: f.LogFileName, size: f.Size ?? 0, lastWritten: f.LastWritten ?? 0 });
        }
        marker = r.Marker;
      } while (marker);
      return out;
    },
    async portion(name, marker, lines) {
      const { m, client } = await connect();
      const r = await client
        .send(new m.DownloadDBLogFilePortionCommand({ DBInstanceIdentifier: instance, LogFileName: name, Marker: marker, NumberOfLines: lines }))
        .catch((err: unknown) => {
          throw failed(`reading ${name}`, err);
        });
      return { data: r.LogFileData ?? '', marker: r.Marker ?? marker, pending: r.AdditionalDataPending === true };
    },
  };
}

interface Portion {
  start: number;
  end: number;
  /** the marker it was asked from, and the one after it */
  from: string;
  next: string;
  lines: number;
  /**
   * One line of 1 MB or more without its newline: the API may have cut it. `'maybe'` until the next
   * portion is seen (wasCut): `true` when the rest of the line was dropped, `false` when the API
   * went on mid-line and nothing is lost.
   */
  cut: boolean | 'maybe';
}

/**
 * The files as the ingester reads every source: a name, an identity, a size, bytes at an offset.
 * An offset is a byte of the portions as they arrived, one after another; where they are is
 * remembered (start, end, markers) per file, and only the last portions' bytes are kept. A portion
 * of 1 MB may have been cut by the API: it is asked again with half as many lines until it is not,
 * so no line is lost to the limit unless a single line is over 1 MB. Such a line arrives cut (its
 * first MB, and the next portion starts at the next line): a read ending there says `cut`, and the
 * ingester records the cut record and reads on from the next line. Unsaid, a cut inside a quoted
 * csvlog field would hold the file's later lines in that field until the file rotated. What the
 * API does after a cut (drop the line's rest, or go on mid-line) is undocumented: the next portion
 * and the marker of a two-line ask decide (wasCut). A cut file's bytes as read are fewer than its
 * listed size, by an amount the API does not say.
 */
export function rdsLogs(api: RdsLogApi, format: LogFormat = 'csvlog', server?: string): LogFiles {
  // Another instance's files (an Aurora reader's) are named and keyed with the instance, so two
  // instances' `error/postgresql.log.<hour>` stay apart; the first instance's keep the bare name.
  const shown = (name: string) => (server === undefined ? name : `${server}/${name}`);
  const files = new Map<string, { portions: Portion[] }>();
  const state = (name: string) => {
    let s = files.get(name);
    if (!s) files.set(name, (s = { portions: [] }));
    return s;
  };
  // The bytes of the last few portions read, of any file: memory stays at a few MB however many
  // files RDS keeps (up to 7 days of hourly files); older portions are asked for again if needed.
  const kept: { name: string; start: number; bytes: Buffer }[] = [];
  const keep = (name: string, start: number, bytes: Buffer) => {
    kept.push({ name, start, bytes });
    if (kept.length > 4) kept.shift();
  };
  /**
   * A portion of at most `lines` lines that the API did not cut (halving the lines while it did: it
   * reached 1 MB, or came back with the truncation notice, which an API whose 1 MB counts more than
   * the file's bytes may put on a shorter portion).
   */
  const fetch = async (name: string, from: string, lines: number) => {
    for (let n = lines; ; n = Math.max(1, Math.floor(n / 2))) {
      const r = await api.portion(name, from, n);
      const data = Buffer.from(r.data, 'utf8');
      const { bytes, notice } = withoutNotice(data);
      const full = notice || data.length >= PORTION_LIMIT;
      if (!full || n === 1) {
        const cut: Portion['cut'] = full && bytes.at(-1) !== 0x0a ? 'maybe' : false;
        return { ...r, bytes, lines: n, cut };
      }
    }
  };
  /** Portions up to `until`, or to the end of what the file holds now. */
  const reach = async (name: string, until: number): Promise<void> => {
    const s = state(name);
    for (;;) {
      const last = s.portions.at(-1);
      if (last && last.end > until) return;
      const from = last ? last.next : '0';
      const got = await fetch(name, from, LINES);
      if (got.bytes.length === 0) return; // nothing more now (the file may grow: asked again from the same marker next time)
      const start = last?.end ?? 0;
      s.portions.push({ start, end: start + got.bytes.length, from, next: got.marker, lines: got.lines, cut: got.cut });
      keep(name, start, got.bytes);
    }
  };
  const bytesOf = async (name: string, p: Portion): Promise<Buffer> => {
    const hit = kept.find((k) => k.name === name && k.start === p.start);
    if (hit) return hit.bytes;
    const again = withoutNotice(Buffer.from((await api.portion(name, p.from, p.lines)).data, 'utf8')).bytes;
    if (again.length !== p.end - p.start) {
      throw new ServiceError(`--log-source rds: ${name} changed under the ingester (a portion read again has ${again.length} bytes, not ${p.end - p.start})`);
    }
    keep(name, p.start, again);
    return again;
  };
  /**
   * Up to `length` bytes at `position`, from the one portion holding it (fewer at its end; none past
   * the file's end); `cut` when they reach the end of a portion the API cut.
   */
  const readAt = async (name: string, buf: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number; cut: boolean }> => {
    await reach(name, position);
    const p = state(name).portions.find((x) => x.start <= position && position < x.end);
    // Past the last portion: the file's end for now. `cut` when that portion is a line of 1 MB or
    // more still without its end: if nothing ever follows it (the file rotated), it was cut.
    if (!p) return { bytesRead: 0, cut: state(name).portions.at(-1)?.cut === 'maybe' };
    const bytes = await bytesOf(name, p);
    const bytesRead = bytes.copy(buf, offset, position - p.start, Math.min(bytes.length, position - p.start + length));
    return { bytesRead, cut: position + bytesRead === p.end && (await wasCut(name, p)) };
  };
  /** Whether the line a portion ends in was cut (decided once the next portion is there: false till then). */
  const wasCut = async (name: string, p: Portion): Promise<boolean> => {
    if (p.cut !== 'maybe') return p.cut;
    await reach(name, p.end);
    const next = state(name).portions.find((x) => x.start === p.end);
    if (!next) return false; // nothing after it yet: asked again when there is
    const head = (await bytesOf(name, next)).toString('latin1', 0, IDENTITY_BYTES);
    if (!RECORD_START[format].test(head)) return (p.cut = false); // the rest of the line: nothing dropped
    // It starts like a record. It may still be the rest of the line, from an API that goes on
    // mid-line, at text the application wrote to look like a record (README, trust model). Asked
    // again for two lines from the same marker: an API that drops a cut line's rest moves its
    // marker past both lines; one that goes on mid-line stops at the same mark again.
    const two = await api.portion(name, p.from, 2);
    p.cut = two.marker !== p.next;
    return p.cut;
  };
  return {
    async list() {
      const out: LogFile[] = [];
      for (const f of await api.listFiles()) {
        if (!f.name.endsWith(EXTENSION[format]) || f.size < IDENTITY_BYTES) continue;
        // Its first bytes (which may span portions: a portion can be a single short line).
        const head = Buffer.alloc(IDENTITY_BYTES);
        let got = 0;
        for (let n = -1; got < IDENTITY_BYTES && n !== 0; got += n) n = (await readAt(f.name, head, got, IDENTITY_BYTES - got, got)).bytesRead;
        if (got < IDENTITY_BYTES) continue;
        out.push({
          name: shown(f.name),
          key: `rds:${shown(f.name)}:${createHash('sha256').update(head).digest('hex').slice(0, 32)}`,
          size: f.size,
          mtimeMs: f.lastWritten,
          ...(server === undefined ? {} : { server }),
        });
      }
      return out.sort((a, b) => a.mtimeMs - b.mtimeMs || a.name.localeCompare(b.name));
    },
    async open(file) {
      const name = server === undefined ? file.name : file.name.slice(server.length + 1);
      return {
        read: (buf, offset, length, position) => readAt(name, buf, offset, length, position),
        close: () => Promise.resolve(),
      };
    },
  };
}

/**
 * Several instances' log files read as one log (Aurora: the writer and each reader write their own
 * log, and a read on a reader is only in that reader's): each file tagged with its instance, so
 * each instance's newest file is the one still being written. The first instance keeps the names
 * and keys a single-instance ingester saved.
 */
export function rdsInstancesLogs(instances: string[], apiOf: (instance: string) => RdsLogApi, format: LogFormat = 'csvlog'): LogFiles {
  const each = instances.map((id, i) => ({ id, logs: rdsLogs(apiOf(id), format, i === 0 ? undefined : id) }));
  if (each.length === 1) return each[0]!.logs;
  const owner = new Map<string, LogFiles>();
  return {
    async list() {
      const all: LogFile[] = [];
      for (const [i, { id, logs }] of each.entries()) {
        for (const f of await logs.list()) {
          const tagged = i === 0 ? { ...f, server: id } : f;
          owner.set(tagged.key, logs);
          all.push(tagged);
        }
      }
      return all.sort((a, b) => a.mtimeMs - b.mtimeMs || a.name.localeCompare(b.name));
    },
    async open(file) {
      const logs = owner.get(file.key);
      if (!logs) throw new ServiceError(`--log-source rds: ${file.name} is no longer listed by any instance`);
      return logs.open(file);
    },
  };
}
