import { readdir, readFile, stat } from 'node:fs/promises';
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
 */
export interface FakeRds {
  url: string;
  /** every DownloadDBLogFilePortion asked: file, marker, lines, bytes answered (after the cut) */
  portions: { file: string; marker: string; lines: number; bytes: number }[];
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
  const fake: Omit<FakeRds, 'url' | 'close'> = { portions: [], throttled: 0 };
  /** each instance's log directory (`others`: more instances, an Aurora cluster's readers, served whole) */
  const dirs = new Map([[instance, dir], ...Object.entries(others)]);
  const since = new Map<string, number>();
  for (const n of await readdir(dir)) since.set(path.join(dir, n), (await stat(path.join(dir, n))).size);
  /** The instance's part of a file: from the first line that began after the fake started. */
  const served = async (dir: string, name: string): Promise<Buffer> => {
    const all = await readFile(path.join(dir, name));
    const from = since.get(path.join(dir, name)) ?? 0;
    if (from === 0) return all;
    const nl = all.indexOf(0x0a, from - 1);
    return nl < 0 ? Buffer.alloc(0) : all.subarray(nl + 1);
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
              return `<DescribeDBLogFilesDetails><LastWritten>${Math.floor(st.mtimeMs)}</LastWritten><LogFileName>error/${xml(n)}</LogFileName><Size>${(await served(dir, n)).length}</Size></DescribeDBLogFilesDetails>`;
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
          const marker = q.get('Marker') ?? '0';
          const lines = Number(q.get('NumberOfLines') ?? '10000');
          const start = marker === '0' ? 0 : Number(marker.split(':')[1]);
          let end = start;
          for (let n = 0; n < lines && end < content.length; n++) {
            const nl = content.indexOf(0x0a, end);
            if (nl < 0) break; // a line still being written is not served
            end = nl + 1;
          }
          const data = content.subarray(start, Math.min(end, start + LIMIT));
          fake.portions.push({ file, marker, lines, bytes: data.length });
          return reply(
            200,
            `<DownloadDBLogFilePortionResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/"><DownloadDBLogFilePortionResult><LogFileData>${xml(data.toString('utf8'))}</LogFileData><AdditionalDataPending>${end < content.length}</AdditionalDataPending><Marker>7:${end}</Marker></DownloadDBLogFilePortionResult><ResponseMetadata><RequestId>p</RequestId></ResponseMetadata></DownloadDBLogFilePortionResponse>`,
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
