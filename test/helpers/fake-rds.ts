import { open, readdir, stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import path from 'node:path';

/**
 * A stand-in for the Amazon RDS API's two log-file actions (DescribeDBLogFiles,
 * DownloadDBLogFilePortion), over HTTP in the AWS Query protocol the SDK speaks, serving the files
 * of a real PostgreSQL log directory as RDS serves an instance's (`error/<name>`). No RDS instance
 * is reachable from the tests. It behaves as the API reference documents, taking the worst reading
 * where it is silent: a listing comes in pages (two files a page, with a Marker); a portion is
 * `NumberOfLines` lines from the marker ("0": the start), cut at 1 MB when longer, and the next
 * marker is after the lines asked for even when they were cut (the cut part is lost); markers are
 * opaque to the caller; every seventh request is throttled (HTTP 400, Throttling), which the SDK retries.
 * A cut portion ends in the truncation notice its users report the API puts there
 * (`\n [Your log message was truncated]\n`, as aws/aws-cli#3079 shows it).
 */
export interface FakeRds {
  url: string;
  /** every DownloadDBLogFilePortion asked: file, marker, lines, bytes answered (after the cut) */
  portions: { file: string; marker: string; lines: number; bytes: number }[];
  /**
   * Files (by name) whose portions end early, at this many bytes, while DescribeDBLogFiles lists
   * their whole size: a 260 MB file's portions were reported to end at 100 MB (aws/aws-sdk-ruby#987).
   */
  servedUpTo: Map<string, number>;
  throttled: number;
  close(): Promise<void>;
}

const LIMIT = 1024 * 1024;
const xml = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/\r/g, '&#13;');

/**
 * `dir`'s files as the instance's log; each file that exists now is served from its current end
 * (the next line), so the instance's log is what was written after this call: the suite's whole
 * log (hundreds of MB in a full run) is not read through the API by every test.
 */
export async function fakeRds(dir: string, instance: string, others: Record<string, string> = {}): Promise<FakeRds> {
  const fake: Omit<FakeRds, 'url' | 'close'> = { portions: [], throttled: 0, servedUpTo: new Map() };
  /** each instance's log directory (`others`: more instances, an Aurora cluster's readers, served whole) */
  const dirs = new Map([[instance, dir], ...Object.entries(others)]);
  const since = new Map<string, number>();
  for (const n of await readdir(dir)) since.set(path.join(dir, n), (await stat(path.join(dir, n))).size);
  /**
   * Where the instance's part of a file begins: the first line that began after the fake started
   * (null: none yet). Files are read by range, never whole: the suite's log grows to tens of MB.
   */
  const bases = new Map<string, number>();
  const baseOf = async (file: string, size: number): Promise<number | null> => {
    const known = bases.get(file);
    if (known !== undefined) return known;
    const from = since.get(file) ?? 0;
    if (from === 0) {
      bases.set(file, 0);
      return 0;
    }
    for (let at = from - 1; at < size; at += 1 << 20) {
      const chunk = await readRange(file, at, Math.min(1 << 20, size - at));
      const nl = chunk.indexOf(0x0a);
      if (nl >= 0) {
        bases.set(file, at + nl + 1);
        return at + nl + 1;
      }
    }
    return null;
  };
  const readRange = async (file: string, at: number, length: number): Promise<Buffer> => {
    const fh = await open(file, 'r');
    try {
      const b = Buffer.alloc(Math.max(0, length));
      const { bytesRead } = await fh.read(b, 0, b.length, at);
      return b.subarray(0, bytesRead);
    } finally {
      await fh.close();
    }
  };
  /** The served size of a file, and a reader of its served bytes. */
  const served = async (dir: string, name: string) => {
    const file = path.join(dir, name);
    const size = (await stat(file)).size;
    const base = await baseOf(file, size);
    return {
      size: base === null ? 0 : size - base,
      read: (at: number, length: number) => (base === null ? Promise.resolve(Buffer.alloc(0)) : readRange(file, base + at, Math.min(length, size - base - at))),
    };
  };
  let requests = 0;
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += String(d)));
    req.on('end', () => {
      void (async () => {
        const q = new URLSearchParams(body);
        const action = q.get('Action');
        const reply = (status: number, text: string) => {
          res.writeHead(status, { 'content-type': 'text/xml' });
          res.end(text);
        };
        if (++requests % 7 === 0) {
          fake.throttled++;
          return reply(
            400,
            '<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>t</RequestId></ErrorResponse>',
          );
        }
        const dir = dirs.get(q.get('DBInstanceIdentifier') ?? '');
        if (dir === undefined) {
          return reply(
            404,
            `<ErrorResponse><Error><Type>Sender</Type><Code>DBInstanceNotFound</Code><Message>DBInstance ${xml(q.get('DBInstanceIdentifier') ?? '')} not found.</Message></Error><RequestId>n</RequestId></ErrorResponse>`,
          );
        }
        if (action === 'DescribeDBLogFiles') {
          const names = (await readdir(dir)).sort();
          const from = Number(q.get('Marker') ?? '0');
          const page = names.slice(from, from + 2);
          const details = await Promise.all(
            page.map(async (n) => {
              const st = await stat(path.join(dir, n));
              return `<DescribeDBLogFilesDetails><LastWritten>${Math.floor(st.mtimeMs)}</LastWritten><LogFileName>error/${xml(n)}</LogFileName><Size>${(await served(dir, n)).size}</Size></DescribeDBLogFilesDetails>`;
            }),
          );
          const next = from + 2 < names.length ? `<Marker>${from + 2}</Marker>` : '';
          return reply(
            200,
            `<DescribeDBLogFilesResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/"><DescribeDBLogFilesResult><DescribeDBLogFiles>${details.join('')}</DescribeDBLogFiles>${next}</DescribeDBLogFilesResult><ResponseMetadata><RequestId>d</RequestId></ResponseMetadata></DescribeDBLogFilesResponse>`,
          );
        }
        if (action === 'DownloadDBLogFilePortion') {
          const file = (q.get('LogFileName') ?? '').replace(/^error\//, '');
          const content = await served(dir, path.basename(file));
          content.size = Math.min(content.size, fake.servedUpTo.get(path.basename(file)) ?? Infinity);
          const marker = q.get('Marker') ?? '0';
          const lines = Number(q.get('NumberOfLines') ?? '10000');
          const start = marker === '0' ? 0 : Number(marker.split(':')[1]);
          // The end of the lines asked for (a line still being written is not served), scanned a
          // block at a time; the answer is cut at 1 MB, but the next marker is after those lines.
          let end = start;
          let n = 0;
          scan: for (let at = start; n < lines && at < content.size;) {
            const block = (await content.read(at, 1 << 20)).subarray(0, content.size - at);
            if (block.length === 0) break;
            for (let i = 0; i < block.length; i++) {
              if (block[i] !== 0x0a) continue;
              end = at + i + 1;
              if (++n === lines) break scan;
            }
            at += block.length;
          }
          const data = await content.read(start, Math.min(end, start + LIMIT) - start);
          const notice = start + data.length < end ? '\n [Your log message was truncated]\n' : '';
          fake.portions.push({ file, marker, lines, bytes: data.length });
          return reply(
            200,
            `<DownloadDBLogFilePortionResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/"><DownloadDBLogFilePortionResult><LogFileData>${xml(data.toString('utf8') + notice)}</LogFileData><AdditionalDataPending>${end < content.size}</AdditionalDataPending><Marker>7:${end}</Marker></DownloadDBLogFilePortionResult><ResponseMetadata><RequestId>p</RequestId></ResponseMetadata></DownloadDBLogFilePortionResponse>`,
          );
        }
        return reply(400, `<ErrorResponse><Error><Type>Sender</Type><Code>InvalidAction</Code><Message>${xml(action ?? '')}</Message></Error></ErrorResponse>`);
      })();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return Object.assign(fake, { url: `http://127.0.0.1:${port}`, close: () => new Promise<void>((resolve) => server.close(() => resolve())) });
}
