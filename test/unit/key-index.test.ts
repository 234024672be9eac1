import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Batch } from '../../src/seal/batch.js';
import { indexOf, KEY_COLUMNS, mayContain, murmur3, openIndex, recordKeys, tableNames, type KeyIndex } from '../../src/seal/key-index.js';
import { keyIdOf, type SigningKey } from '../../src/seal/keys.js';
import { GENESIS_CHAIN, openRecord } from '../../src/seal/record.js';
import { tupleLayout } from '../../src/seal/raw-record.js';
import { sealBatch } from '../../src/seal/sealer.js';
import { EVERYTHING, indexRulesOut, matches, type Query } from '../../src/query/filter.js';
import type { ArchivedRecord } from '../../src/verify/file.js';
import { checkRecords } from '../../src/verify/records.js';
import { EMPTY_HEAD } from '../../src/ship/resume.js';
import type { Lsn } from '../../src/source/lsn.js';
import { insertMessage } from '../helpers/pgoutput.js';

const COLUMNS = [
  'id',
  'occurred_at',
  'source',
  'action',
  'outcome',
  'statement',
  'schema_name',
  'table_name',
  'relation_name',
  'row_id',
  'old_row_id',
  'session_user_name',
  'current_role_name',
  'app_user_id',
  'app_customer_id',
  'app_context',
];

/** A small deterministic generator (the test must fail the same way every time). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

// Values a hostile or unusual workload writes: quotes, backslashes, dots, non-ASCII, empty text, NULL.
const ODD = ['', '.', 'a.b', 'Zoë Ünal 🙂', 'x"y', 'back\\slash', 'line\nbreak', '\u2028', 'public."odd.name"', ' spaced '];

function randomRows(n: number, seed: number): (string | null)[][] {
  const r = rng(seed);
  const pick = <T>(xs: T[]): T => xs[Math.floor(r() * xs.length)]!;
  const maybe = (v: string): string | null => (r() < 0.1 ? null : r() < 0.1 ? pick(ODD) : v);
  const rows: (string | null)[][] = [];
  for (let i = 0; i < n; i++) {
    const table = pick(['patients', 'visits', 'notes']);
    const partitioned = r() < 0.3;
    const attest = r() < 0.02;
    rows.push([
      String(i + 1),
      `2026-11-27 02:${String(10 + (i % 40)).padStart(2, '0')}:09.129119+00`,
      attest ? 'attest' : pick(['trigger', 'pgaudit']),
      attest ? 'ATTESTATION' : pick(['SELECT', 'INSERT', 'UPDATE', 'DELETE']),
      'success',
      attest ? (r() < 0.5 ? JSON.stringify({ attestation: 1, interval_s: 3600, config_sha256: 'ab'.repeat(32), config: {} }) : 'not json') : null,
      maybe(pick(['clinic', 'public'])),
      maybe(table),
      partitioned ? maybe(`clinic.${table}_2026`) : null,
      maybe(String(Math.floor(r() * 500))),
      r() < 0.1 ? String(Math.floor(r() * 500)) : null,
      maybe(pick(['app', 'dba', 'reporting'])),
      maybe(pick(['app', 'auditor', 'none'])),
      maybe(`user${Math.floor(r() * 30)}`),
      maybe(String(Math.floor(r() * 200))),
      r() < 0.05 ? 'unknown' : 'set',
    ]);
  }
  return rows;
}

function signingKey(): SigningKey {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return { keyId: keyIdOf(publicKey), privateKey, publicKey };
}

const start = { recordSeq: 0, chain: GENESIS_CHAIN, lastLsn: null, lastIdx: -1 };
const layout = tupleLayout(16_384, COLUMNS);

/** The same rows through the shipper's raw path and through the general path; each batch's index and parsed records. */
function bothPaths(rows: (string | null)[][]): { raw: KeyIndex; general: KeyIndex; records: ArchivedRecord[] } {
  const viaBytes = new Batch(start, '2026-11-27');
  const viaRow = new Batch(start, '2026-11-27');
  rows.forEach((values, idx) => {
    const lsn = BigInt(0x16b3f40 + idx * 0x100) as Lsn;
    viaBytes.appendInsert(lsn, 0, { buf: insertMessage(16_384, values), offset: 6, layout });
    viaRow.append({ op: 'insert', commitLsn: lsn, idx: 0, row: Object.fromEntries(COLUMNS.map((c, i) => [c, values[i]!])) });
  });
  const raw = viaBytes.keys.build();
  const general = viaRow.keys.build();
  const text = Buffer.concat(viaBytes.take()).toString('utf8').trimEnd().split('\n');
  const records = text.map((l) => ({ ...(JSON.parse(openRecord(l)!.body) as ArchivedRecord) }));
  return { raw, general, records };
}

describe('the key index (docs/format.md 4.4)', () => {
  it('hashes with MurmurHash3 x86 32-bit as published (SMHasher vectors), over every tail length', () => {
    const m = (text: string, seed: number): number => {
      const b = Buffer.from(text, 'utf8');
      return murmur3(b, b.length, seed);
    };
    expect(m('', 0)).toBe(0);
    expect(m('', 1)).toBe(0x514e28b7);
    expect(m('', 0xffffffff)).toBe(0x81f16f39);
    expect(m('The quick brown fox jumps over the lazy dog', 0)).toBe(0x2e4ff723);
    expect(m('Hello, world!', 1234)).toBe(0xfaf6cdb3);
    expect(m('aaaa', 0x9747b28c)).toBe(0x5a97808a);
    expect(m('aaa', 0x9747b28c)).toBe(0x283e0130);
    expect(m('aa', 0x9747b28c)).toBe(0x5d211726);
    expect(m('a', 0x9747b28c)).toBe(0x7fa09ea6);
  });

  it('is the same from the raw path, the general path and a verifier reading the lines back, on odd values', () => {
    const rows = randomRows(3000, 1);
    const { raw, general, records } = bothPaths(rows);
    expect(raw).toEqual(general);
    expect(indexOf(records)).toEqual(raw);
    expect(raw.unattributed).toBe(rows.filter((r) => r[15] === 'unknown').length);
    expect(raw.attestations.length).toBe(rows.filter((r) => r[2] === 'attest').length);
    expect(raw.attestations.some((a) => a.config_sha256 === null)).toBe(true); // the unreadable ones are listed too
    expect(raw.keys).toBe(new Set(records.flatMap((r) => recordKeys(r))).size);
    expect(raw.bits).toBe(raw.keys * 20);
    expect(KEY_COLUMNS.every((c) => COLUMNS.includes(c))).toBe(true); // the layout sees every column the index reads
  });

  it('never rules out a file for a query one of its records matches (no false negative), over every key of every record', () => {
    for (const seed of [2, 3, 4]) {
      const { raw, records } = bothPaths(randomRows(2000, seed));
      const index = openIndex(raw)!;
      let asked = 0;
      for (const r of records) {
        const queries: Query[] = [];
        if (typeof r.app_customer_id === 'string') queries.push({ ...EVERYTHING, customer: r.app_customer_id });
        if (typeof r.app_user_id === 'string') queries.push({ ...EVERYTHING, appUser: r.app_user_id });
        for (const u of [r.session_user_name, r.current_role_name]) if (typeof u === 'string') queries.push({ ...EVERYTHING, dbUser: u });
        for (const t of tableNames(r)) queries.push({ ...EVERYTHING, table: t });
        for (const id of [r.row_id, r.old_row_id]) if (typeof id === 'string') queries.push({ ...EVERYTHING, rowId: id });
        // and every combination of two of them
        const single = queries.length;
        for (let i = 0; i + 1 < single; i++)
          queries.push({ ...queries[i]!, ...Object.fromEntries(Object.entries(queries[i + 1]!).filter(([, v]) => v !== null && !Array.isArray(v))) });
        for (const q of queries) {
          if (!matches(r, q)) continue;
          asked++;
          expect(indexRulesOut(index, q), JSON.stringify(q)).toBe(false);
        }
      }
      expect(asked).toBeGreaterThan(10_000);
    }
  });

  it('rules out keys the file does not hold, with wrong positives near the documented rate', () => {
    const { raw } = bothPaths(randomRows(2000, 5));
    const index = openIndex(raw)!;
    let wrong = 0;
    const tries = 100_000;
    for (let i = 0; i < tries; i++) if (mayContain(index, 'customer', `absent-${i}`)) wrong++;
    // 20 bits and 14 positions per key: about 7 in 100,000 expected; ten times that fails.
    expect(wrong).toBeLessThan(70);
    expect(indexRulesOut(index, { ...EVERYTHING, customer: 'absent-x' })).toBe(true);
    expect(indexRulesOut(index, { ...EVERYTHING, customer: 'absent-x', table: 'patients' })).toBe(true);
    expect(indexRulesOut(index, { ...EVERYTHING, table: 'patients' })).toBe(false);
    expect(indexRulesOut(index, { ...EVERYTHING, actions: ['SELECT'] })).toBe(false); // nothing the index holds
    expect(indexRulesOut({ ...index, index: { ...index.index, tamper_or_gap: 1 } }, { ...EVERYTHING, customer: 'absent-x' })).toBe(false);
  });

  it('an empty file (only bookkeeping records) holds no key, and a malformed index is not an index', () => {
    const b = new Batch(start, '2026-11-27');
    b.append({ op: 'marker', commitLsn: 0x100n as Lsn, idx: 0, row: null, extra: { reason: 'x' } });
    b.append({ op: 'gap', commitLsn: 0x200n as Lsn, idx: -1, row: null, extra: { reason: 'y' } });
    const idx = b.keys.build();
    expect(idx).toEqual({ keys: 0, bits: 0, hashes: 14, bloom: '', unattributed: 0, tamper_or_gap: 1, attestations: [] });
    expect(mayContain(openIndex(idx)!, 'row', '1')).toBe(false);
    expect(openIndex({ ...idx, keys: 3 })).toBeNull(); // keys but no filter
    expect(openIndex({ ...idx, bloom: 'AAAA' })).toBeNull(); // filter of the wrong length
    expect(openIndex({ ...idx, hashes: 0 })).toBeNull();
    expect(openIndex(null)).toBeNull();
  });

  it("verify recomputes the index from the records: a signed index that leaves a key out is a finding, the writer's is not", async () => {
    const rows = randomRows(200, 6);
    const batch = new Batch(start, '2026-11-27');
    rows.forEach((values, idx) => batch.appendInsert(BigInt(0x1000 + idx) as Lsn, 0, { buf: insertMessage(16_384, values), offset: 6, layout }));
    const sealed = await sealBatch(
      batch,
      EMPTY_HEAD,
      { systemIdentifier: '1', timeline: 1, database: 'd', slot: 's' },
      signingKey(),
      new Date('2026-11-27T03:00:00Z'),
    );
    const { gunzipSync } = await import('node:zlib');
    const lines = gunzipSync(sealed.objects[0]!.body)
      .toString('utf8')
      .trimEnd()
      .split('\n')
      .map((line) => ({ line, record: JSON.parse(openRecord(line)!.body) as ArchivedRecord }));
    expect(checkRecords(sealed.digest, lines).map((f) => f.code)).toEqual([]);
    // An insider with the signing key builds the index without one patient's rows, so a search for them skips the file.
    const hidden = String(lines.find((l) => typeof l.record.app_customer_id === 'string')!.record.app_customer_id);
    const forged = indexOf(lines.map((l) => l.record).filter((r) => r.app_customer_id !== hidden));
    expect(indexRulesOut(openIndex(forged), { ...EVERYTHING, customer: hidden })).toBe(true);
    const findings = checkRecords({ ...sealed.digest, index: forged }, lines);
    expect(findings.map((f) => f.code)).toEqual(['index-mismatch']);
    expect(findings[0]!.message).toMatch(/a query skipping files by it could miss events of this file/);
  });
});
