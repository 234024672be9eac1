import { describe, expect, it } from 'vitest';
import { PORTION_LIMIT, rdsInstancesLogs, rdsLogs, TRUNCATION_NOTICE, type RdsLogApi } from '../../src/capture/ingest/rds-logs.js';

/**
 * The API as documented: lines from an opaque marker, cut at 1 MB (the cut part lost), the next
 * marker after the lines asked. `midLine`: the other reading of the documentation, the next marker
 * just after the bytes returned, so a cut line goes on in the next portion. `notice`: text put after
 * the bytes of a cut portion, as the API's users report it does (TRUNCATION_NOTICE); `cutAt`: where
 * it cuts, for an API whose 1 MB counts more than the file's bytes (the answer's XML escapes).
 */
function api(
  files: Record<string, string>,
  { midLine = false, notice = '', cutAt = PORTION_LIMIT } = {},
): RdsLogApi & { asked: { name: string; marker: string; lines: number }[] } {
  const asked: { name: string; marker: string; lines: number }[] = [];
  return {
    asked,
    listFiles: async () => Object.entries(files).map(([name, text], i) => ({ name, size: Buffer.byteLength(text), lastWritten: i })),
    portion: async (name, marker, lines) => {
      asked.push({ name, marker, lines });
      const b = Buffer.from(files[name]!);
      const start = marker === '0' ? 0 : Number(marker.slice(2));
      let end = start;
      for (let n = 0; n < lines && end < b.length; n++) end = b.indexOf(0x0a, end) + 1 || b.length;
      const to = Math.min(end, start + cutAt);
      return { data: b.subarray(start, to).toString('utf8') + (to < end ? notice : ''), marker: `m:${midLine ? to : end}`, pending: end < b.length };
    },
  };
}

/** The file's bytes as read, with the offsets where a read said the source cut a line. */
async function readCuts(logs: ReturnType<typeof rdsLogs>, name: string, chunk: number): Promise<{ text: string; cuts: number[]; endCut: boolean }> {
  const file = (await logs.list()).find((f) => f.name === name)!;
  const r = await logs.open(file);
  const parts: Buffer[] = [];
  const cuts: number[] = [];
  for (let at = 0; ;) {
    const buf = Buffer.alloc(chunk);
    const { bytesRead, cut } = await r.read(buf, 0, chunk, at);
    if (bytesRead === 0) return { text: Buffer.concat(parts).toString('utf8'), cuts, endCut: cut === true };
    parts.push(buf.subarray(0, bytesRead));
    at += bytesRead;
    if (cut) cuts.push(at);
  }
}

async function readAll(logs: ReturnType<typeof rdsLogs>, name: string, chunk: number): Promise<string> {
  const { text, cuts, endCut } = await readCuts(logs, name, chunk);
  expect([cuts, endCut]).toEqual([[], false]);
  return text;
}

/** A csvlog-like line: it starts as a record does (its log time), the rest is `body`. */
const rec = (body: string) => `2026-12-07 13:00:00.000 UTC,"app",${body}\n`;

describe('the RDS log files, read as the ingester reads any log', () => {
  it('gives every byte once, in order, across portions; a portion the API cut at 1 MB is asked again with fewer lines', async () => {
    const big = `${'a'.repeat(700_000)}\n`;
    const text = ['line one\n', big, big, 'ümlaut line\n', ...Array.from({ length: 5000 }, (_, i) => `line ${i}\n`)].join('');
    const a = api({ 'error/postgresql.log.2026-12-07-13.csv': text, 'error/postgresql.log.2026-12-07-13': 'stderr log\n'.repeat(10) });
    const logs = rdsLogs(a);
    const listed = await logs.list();
    expect(listed.map((f) => f.name)).toEqual(['error/postgresql.log.2026-12-07-13.csv']); // csvlog only
    expect(listed[0]!.key).toMatch(/^rds:error\/postgresql\.log\.2026-12-07-13\.csv:[0-9a-f]{32}$/);
    expect(await readAll(logs, 'error/postgresql.log.2026-12-07-13.csv', 64 * 1024)).toBe(text);
    // The first ask (2000 lines from the start) came back cut, so it was asked again with 1000, then 500...
    const fromStart = a.asked.filter((x) => x.marker === '0').map((x) => x.lines);
    expect(fromStart.slice(0, 2)).toEqual([2000, 1000]);
  });

  it('says where the API cut a line over 1 MB (the next portion starting the next record), only once it knows', async () => {
    const huge = rec(`"${'q'.repeat(1_500_000)}"`);
    const files: Record<string, string> = { 'error/a.csv': rec('before') + huge };
    const logs = rdsLogs(api(files));
    // Nothing after the cut line yet: whether the API dropped its rest or goes on mid-line is not known.
    const first = await readCuts(logs, 'error/a.csv', 256 * 1024);
    expect(first.cuts).toEqual([]);
    expect(first.text).toBe(rec('before') + huge.slice(0, PORTION_LIMIT));
    // ...but the end of the bytes says the last line may be cut (if the file rotated now, it was).
    expect(first.endCut).toBe(true);
    // The next record arrives: the portion after the cut starts with it, so the line was cut there.
    files['error/a.csv'] += rec('after');
    const second = await readCuts(rdsLogs(api(files)), 'error/a.csv', 256 * 1024);
    expect(second.text).toBe(rec('before') + huge.slice(0, PORTION_LIMIT) + rec('after'));
    expect(second.cuts).toEqual([Buffer.byteLength(rec('before')) + PORTION_LIMIT]);
    expect(second.endCut).toBe(false);
    // The same through a reader that had read up to the cut before the next record came.
    const third = await readCuts(logs, 'error/a.csv', 256 * 1024);
    expect(third).toEqual(second);
  });

  it('an API that goes on mid-line after 1 MB loses nothing and cuts nothing', async () => {
    const huge = rec(`"${'q'.repeat(1_500_000)}"`);
    const text = rec('before') + huge + rec('after');
    expect(await readAll(rdsLogs(api({ 'error/a.csv': text }, { midLine: true })), 'error/a.csv', 256 * 1024)).toBe(text);
  });

  it("text at the 1 MB mark made to look like a record's start is no cut when the API goes on mid-line (its marker says so), and a cut when it drops the rest", async () => {
    // An application pads its statement so that what it wrote at the mark starts like a record.
    const head = rec('before');
    const lineStart = `2026-12-07 13:00:00.000 UTC,"app","`;
    const forged = `2026-12-07 13:00:00.001 UTC,doctor_x,clinic,99,x,6b0d0099.63,1,SELECT,x,9/1,0,ERROR,42501,permission denied for table customers `;
    const fill = 'p'.repeat(PORTION_LIMIT - Buffer.byteLength(lineStart));
    const padded = `${lineStart}${fill}${forged}${'z'.repeat(1000)}"\n`;
    const text = head + padded + rec('after');
    const mid = api({ 'error/a.csv': text }, { midLine: true });
    expect(await readAll(rdsLogs(mid), 'error/a.csv', 256 * 1024)).toBe(text);
    // The same file from an API that drops a cut line's rest: the mark is a cut, the forged text never arrives.
    const dropped = await readCuts(rdsLogs(api({ 'error/a.csv': text })), 'error/a.csv', 256 * 1024);
    expect(dropped.cuts).toEqual([Buffer.byteLength(head) + PORTION_LIMIT]);
    expect(dropped.text).not.toContain('doctor_x');
  });

  // What the API puts where it cut, as its users report it: aws/aws-cli#3079 shows a cut portion's
  // data ending in `\n [Your log message was truncated]\n`, and others find ` [Your log message was
  // truncated]` inside the lines they downloaded. Read as the file's bytes, its newline would end a
  // cut line whose quoted field is still open, and the next lines of the file would be read into it.
  const notices = [`\n ${TRUNCATION_NOTICE}\n`, ` ${TRUNCATION_NOTICE}\n`, ` ${TRUNCATION_NOTICE}`];

  it.each(notices)(
    'the truncation notice %j after a cut is not taken for the file: the cut is found where it is, and nothing is lost where the API goes on mid-line',
    async (notice) => {
      const huge = rec(`"${'q'.repeat(1_500_000)}"`);
      const text = rec('before') + huge + rec('after');
      const dropped = await readCuts(rdsLogs(api({ 'error/a.csv': text }, { notice })), 'error/a.csv', 256 * 1024);
      expect(dropped.text).toBe(rec('before') + huge.slice(0, PORTION_LIMIT) + rec('after'));
      expect(dropped.cuts).toEqual([Buffer.byteLength(rec('before')) + PORTION_LIMIT]);
      expect(dropped.endCut).toBe(false);
      expect(await readAll(rdsLogs(api({ 'error/a.csv': text }, { notice, midLine: true })), 'error/a.csv', 256 * 1024)).toBe(text);
    },
  );

  it('a portion that comes back with the notice is asked again with fewer lines, even under 1 MB (an API whose 1 MB counts more than the bytes)', async () => {
    const lines = Array.from({ length: 6 }, (_, i) => rec(`"${String(i).repeat(300_000)}"`));
    const a = api({ 'error/a.csv': lines.join('') }, { notice: `\n ${TRUNCATION_NOTICE}\n`, cutAt: 700_000 });
    expect(await readAll(rdsLogs(a), 'error/a.csv', 256 * 1024)).toBe(lines.join(''));
    expect(a.asked.filter((x) => x.marker === '0').map((x) => x.lines)).toEqual([2000, 1000, 500, 250, 125, 62, 31, 15, 7, 3, 1]);
  });

  it('reads a portion again when its bytes were let go, and reads what a growing file added later from where it stopped', async () => {
    const files: Record<string, string> = { 'error/a.csv': Array.from({ length: 20_000 }, (_, i) => `row ${i} ${'x'.repeat(80)}\n`).join('') };
    const a = api(files);
    const logs = rdsLogs(a);
    const all = await readAll(logs, 'error/a.csv', 1 << 20);
    expect(all).toBe(files['error/a.csv']);
    // Back to the start: its portion is asked for again, from the same marker.
    const asked = a.asked.length;
    const r = await logs.open((await logs.list())[0]!);
    const buf = Buffer.alloc(10);
    await r.read(buf, 0, 10, 0);
    expect(buf.toString()).toBe('row 0 xxxx');
    expect(a.asked.slice(asked).some((x) => x.marker === '0')).toBe(true);
    files['error/a.csv'] += 'row appended\n';
    const more = Buffer.alloc(100);
    const { bytesRead } = await r.read(more, 0, 100, Buffer.byteLength(all));
    expect(more.subarray(0, bytesRead).toString()).toBe('row appended\n');
  });

  it("reads several instances as one log: each file tagged with its instance, a reader's names and keys carry it, the writer's stay as a single instance saved them", async () => {
    const hour = 'error/postgresql.log.2026-12-07-13.csv';
    const writer = api({ [hour]: `writer line ${'w'.repeat(70)}\n` });
    const reader = api({ [hour]: `reader line ${'r'.repeat(70)}\n` });
    const apis: Record<string, ReturnType<typeof api>> = { 'db-1': writer, 'db-1-reader': reader };
    const logs = rdsInstancesLogs(['db-1', 'db-1-reader'], (id) => apis[id]!);
    const listed = (await logs.list()).sort((a, b) => (a.server! < b.server! ? -1 : 1)); // (by age; these are of the same age)
    expect(listed.map((f) => [f.name, f.server])).toEqual([
      [hour, 'db-1'],
      [`db-1-reader/${hour}`, 'db-1-reader'],
    ]);
    const single = (await rdsLogs(api({ [hour]: `writer line ${'w'.repeat(70)}\n` })).list())[0]!;
    expect(listed[0]!.key).toBe(single.key); // the writer's position saved by a single-instance run goes on
    expect(listed[1]!.key).toMatch(new RegExp(`^rds:db-1-reader/${hour.replace(/\./g, '\\.')}:[0-9a-f]{32}$`));
    // Each file is read from its own instance.
    expect(await readAll(logs, `db-1-reader/${hour}`, 1024)).toBe(`reader line ${'r'.repeat(70)}\n`);
    expect(await readAll(logs, hour, 1024)).toBe(`writer line ${'w'.repeat(70)}\n`);
    expect(reader.asked.every((x) => x.name === hour)).toBe(true);
    // One instance: exactly the single-instance log, untagged.
    expect((await rdsInstancesLogs(['db-1'], (id) => apis[id]!).list()).map((f) => f.server)).toEqual([undefined]);
  });
});
