import { gunzipSync, gzipSync } from 'node:zlib';
import { createHash } from 'node:crypto';
import { chainHash, openRecord, type ChainHash } from '../../src/seal/record.js';
import { DIGEST_FORMAT_V1, type Digest } from '../../src/seal/digest.js';
import { digestKey } from '../../src/sink/keys.js';
import { auditRow, buildArchive, headOf, KEY_B, resetIds, type FileSpec, type Objects, type RecordSpec } from './build.js';

/**
 * The conformance corpus: one small archive per case, valid or broken in exactly one way, with the
 * verdict a correct verifier reaches (docs/format.md, "Conformance corpus"). `npm run conformance`
 * writes them under test/conformance/corpus/; test/unit/conformance.test.ts holds `verify` to
 * every verdict, on the committed files and on freshly built ones.
 */
export interface CaseArgs {
  expect_head?: string;
  start?: string;
}

export interface Case {
  name: string;
  description: string;
  build: () => Promise<Objects>;
  /** the verifier's inputs besides the archive: which public keys, and optional recorded heads */
  keys?: ('A' | 'B')[];
  args?: (objects: Objects) => Promise<CaseArgs> | CaseArgs;
  expected: {
    ok: boolean;
    /** the distinct codes of the open findings, sorted */
    findings: string[];
    /** ids of recorded findings acknowledged through the chain */
    acknowledged?: string[];
    /** the distinct codes of the notes, sorted */
    notes?: string[];
  };
}

const events = (lsn: string, n: number, over: Partial<Record<string, string | null>> = {}): RecordSpec[] =>
  Array.from({ length: n }, (_, idx) => ({ op: 'insert', lsn, idx, row: auditRow(over) }));

/** Two data files of ordinary trigger events, one transaction each. */
function basic(): FileSpec[] {
  return [
    { records: events('0/1A2B3C8', 3), createdAt: '2026-03-02T09:15:05.000Z', ackLsn: '0/1A2B400' },
    { records: events('0/1A2C000', 2, { occurred_at: '2026-03-02 09:19:59.5+00' }), createdAt: '2026-03-02T09:20:05.000Z', ackLsn: '0/1A2C050' },
  ];
}

/** A third file, to follow `basic()`. */
const third = (extra: Partial<FileSpec> = {}): FileSpec => ({
  records: events('0/1A2D000', 2, { occurred_at: '2026-03-02 09:24:00+00' }),
  createdAt: '2026-03-02T09:25:05.000Z',
  ackLsn: '0/1A2D050',
  ...extra,
});

const build = (files: () => FileSpec[]) => async (): Promise<Objects> => {
  resetIds();
  return buildArchive(files());
};

/** Backfill of rows from two days, sealed on a later day, then a streamed transaction. */
function backfillFiles(): FileSpec[] {
  const rows = (date: string, n: number, from: number) =>
    events('0/1A00000', n, { occurred_at: `${date} 23:59:59.999+00` }).map((r, i) => ({ ...r, idx: from + i, extra: { backfill: 'initial' } }));
  return [
    { records: rows('2026-03-01', 2, 0), commitDate: '2026-03-01', createdAt: '2026-11-28T10:00:00.000Z', ackLsn: '0/0' },
    {
      records: [...rows('2026-03-02', 1, 2), { op: 'marker', lsn: '0/1A00000', idx: 3, extra: { reason: 'backfill-complete', rows: 3, backfill: 'initial' } }],
      commitDate: '2026-03-02',
      createdAt: '2026-11-28T10:00:00.000Z',
      ackLsn: '0/0',
    },
    {
      records: events('0/1A2B3C8', 2, { occurred_at: '2026-11-28 10:00:01+00' }),
      commitDate: '2026-11-28',
      createdAt: '2026-11-28T10:00:06.000Z',
      ackLsn: '0/1A2B400',
    },
  ];
}

/** An ingest receipt (source 'ingest') for bytes [from, to) of one log file. */
export function receipt(idx: number, from: number, to: number): RecordSpec {
  const statement = JSON.stringify({
    file_key: '2049:131077:0f1e2d3c4b5a69788796a5b4c3d2e1f0',
    file_name: 'postgresql-2026-03-02.csv',
    from,
    to,
    sha256: 'ab'.repeat(32),
    lines: 10,
    events: 2,
  });
  return {
    op: 'insert',
    lsn: '0/1A2D000',
    idx,
    row: auditRow({
      source: 'ingest',
      action: 'RECEIPT',
      occurred_at: '2026-03-02 09:24:30+00',
      statement,
      schema_name: null,
      table_name: null,
      row_id: null,
      changed_columns: null,
      app_user_id: null,
      app_customer_id: null,
      session_user_name: 'ingest_login',
    }),
  };
}

/**
 * A shipper's attestation of the capture configuration (source 'attest', docs/format.md 3.4): one
 * protected table whose row trigger is enabled ('O') or disabled ('D'). Spelled out, not computed.
 */
export function attest(idx: number, at: string, rowTrigger: 'O' | 'D', intervalS = 3600): RecordSpec {
  const config = {
    tables: { 'clinic.patients': { key: ['id'], triggers: { audit_row_change: rowTrigger, audit_truncate: 'O' }, auditor_select: true } },
    roles: { superusers: ['postgres'], createrole: [] },
  };
  const statement = JSON.stringify({
    attestation: 1,
    interval_s: intervalS,
    config_sha256: createHash('sha256').update(JSON.stringify(config)).digest('hex'),
    config,
  });
  return {
    op: 'insert',
    lsn: '0/1A2D000',
    idx,
    row: auditRow({
      source: 'attest',
      action: 'ATTESTATION',
      occurred_at: `2026-03-02 ${at}+00`,
      statement,
      schema_name: null,
      table_name: null,
      row_id: null,
      changed_columns: null,
      app_user_id: null,
      app_customer_id: null,
      session_user_name: 'ship_login',
    }),
  };
}

export const OLD_ROW = {
  ...{ id: '2', occurred_at: '2026-03-02 09:15:00.120034+00', source: 'trigger', action: 'UPDATE', outcome: 'success', row_id: '4711' },
};

/** Replace one data file's content (gzip'd again) without touching its digest: what an attacker without the key can do. */
function editData(objects: Objects, fileSeq: number, edit: (lines: string[]) => string[]): void {
  const d = digestOf(objects, fileSeq);
  const lines = gunzipSync(objects.get(d.object_key!)!).toString('utf8').trimEnd().split('\n');
  objects.set(d.object_key!, gzipSync(Buffer.from(`${edit(lines).join('\n')}\n`)));
}

export function digestOf(objects: Objects, fileSeq: number): Digest {
  return JSON.parse(objects.get(digestKey(fileSeq))!.toString('utf8').split('\n')[0]!) as Digest;
}

/** A data object named like a crash leftover of file `fileSeq`: its content hash in the name. */
function placeLeftover(objects: Objects, fileSeq: number, content: string): void {
  const d = digestOf(objects, fileSeq);
  const key = d.object_key!.replace(/-[0-9a-f]{16}\.jsonl\.gz$/, `-${createHash('sha256').update(content).digest('hex').slice(0, 16)}.jsonl.gz`);
  objects.set(key, gzipSync(Buffer.from(content)));
}

/**
 * docs/format.md's test vectors: one record of every kind and one digest of every kind, in a
 * four-file archive. The document quotes every line of it; test/unit/format.test.ts holds the
 * document to these bytes.
 */
export function everyKind(): FileSpec[] {
  const ev = (id: string, at: string, action: string, changed: string | null) => ({
    id,
    occurred_at: at,
    action,
    outcome: 'success',
    row_id: '7',
    changed_columns: changed,
  });
  const r1 = ev('1', '2026-11-26 23:51:06.480123+00', 'INSERT', null);
  const r2 = ev('2', '2026-11-26 23:51:06.485+00', 'UPDATE', '{full_name}');
  return [
    {
      records: [
        { op: 'insert', lsn: '0/1A2B3C8', idx: 0, row: r1 },
        { op: 'insert', lsn: '0/1A2B3C8', idx: 1, row: r2 },
      ],
      commitDate: '2026-11-26',
      createdAt: '2026-11-27T00:00:00.000Z',
      ackLsn: '0/1A2B400',
    },
    { kind: 'heartbeat', createdAt: '2026-11-27T01:00:00.000Z', ackLsn: '0/1A2C000' },
    {
      records: [
        { op: 'update', lsn: '0/1A2D000', idx: 0, row: { ...r2, action: 'SELECT' }, extra: { tamper: true, old: r2 } },
        { op: 'delete', lsn: '0/1A2E000', idx: 0, row: null, extra: { tamper: true, old: r1 } },
        { op: 'truncate', lsn: '0/1A2F000', idx: 0, row: null, extra: { tamper: true, old: null } },
        {
          op: 'insert',
          lsn: '0/1A30000',
          idx: 0,
          row: {
            id: '3',
            occurred_at: '2026-11-27 01:58:00+00',
            source: 'review',
            action: 'ACKNOWLEDGE',
            outcome: 'success',
            row_id: 'record:3',
            session_user_name: 'review_login',
            app_user_id: 'ann',
            statement: 'test change on staging, ticket 7',
          },
        },
      ],
      commitDate: '2026-11-27',
      createdAt: '2026-11-27T02:00:00.000Z',
      ackLsn: '0/1A30050',
    },
    {
      records: [
        {
          op: 'gap',
          lsn: '0/3000000',
          idx: -1,
          extra: {
            reason: 'replication slot missing or re-created',
            archived_up_to_lsn: '0/1A30050',
            recovery: 'rows still in audit_log and not in the archive follow as backfill "slot-lost"',
          },
        },
        { op: 'insert', lsn: '0/3000100', idx: 0, row: ev('4', '2026-11-27 02:30:00+00', 'DELETE', null), extra: { backfill: 'slot-lost' } },
        { op: 'marker', lsn: '0/3000100', idx: 1, extra: { reason: 'backfill-complete', rows: 1, backfill: 'slot-lost' } },
      ],
      commitDate: '2026-11-27',
      createdAt: '2026-11-27T03:00:00.000Z',
      ackLsn: '0/3000200',
    },
  ];
}

/** Two rows read (at `readLsns`, each at `idx`), then a transaction of two events committing at 0/1A2B3C8. */
function rowReads(idx: number, readLsns: string[]): FileSpec[] {
  return [
    {
      records: [
        ...['7', '8'].map((k, i): RecordSpec => ({
          op: 'read',
          lsn: readLsns[i]!,
          idx,
          row: {
            occurred_at: '2026-03-02 09:14:59.25+00',
            source: 'row-read',
            action: 'SELECT',
            outcome: 'success',
            schema_name: 'public',
            table_name: 'customers',
            row_id: k,
            session_user_name: 'app_login',
            current_role_name: 'app_login',
            app_user_id: 'dr.alice',
            app_customer_id: k,
            application_name: 'portal',
            backend_pid: '4242',
          },
        })),
        ...events('0/1A2B3C8', 2),
      ],
      createdAt: '2026-03-02T09:15:05.000Z',
      ackLsn: '0/1A2B400',
    },
  ];
}

export const CASES: Case[] = [
  {
    name: 'vectors-every-kind',
    description: "docs/format.md's vectors: data, heartbeat, tamper UPDATE/DELETE/TRUNCATE, an acknowledgement, a gap, a slot-lost backfill and its marker",
    build: build(everyKind),
    expected: { ok: false, findings: ['gap', 'tamper'], acknowledged: ['record:3'] },
  },
  // ---- valid archives ---------------------------------------------------------------------------
  {
    name: 'valid-basic',
    description: 'two data files, one transaction each',
    build: build(basic),
    expected: { ok: true, findings: [] },
  },
  {
    name: 'valid-row-reads',
    description:
      'rows read through a table protected with --reads rows or both (op "read", each at its own message LSN, idx -1), then the events of a transaction whose commit record follows the last read (its commit LSN is that read\'s LSN)',
    build: build(() => rowReads(-1, ['0/1A2B390', '0/1A2B3C8'])),
    expected: { ok: true, findings: [] },
  },
  {
    name: 'valid-row-reads-idx-0',
    description: 'row reads as archives written before the idx -1 rule hold them (idx 0), then a later transaction',
    build: build(() => rowReads(0, ['0/1A2B100', '0/1A2B108'])),
    expected: { ok: true, findings: [] },
  },
  {
    name: 'row-read-idx-0-then-same-lsn',
    description: 'a read at idx 0 and a transaction committing at the same LSN: two records at the same position',
    build: build(() => rowReads(0, ['0/1A2B390', '0/1A2B3C8'])),
    expected: { ok: false, findings: ['lsn-order'] },
  },
  {
    name: 'valid-heartbeat',
    description: 'a data file, a heartbeat (nothing happened; the slot moved), a data file linking past it',
    build: build(() => {
      const [a, b] = basic();
      return [a!, { kind: 'heartbeat', createdAt: '2026-03-02T09:17:00.000Z', ackLsn: '0/1A2BF00' }, b!];
    }),
    expected: { ok: true, findings: [] },
  },
  {
    name: 'valid-spanning-transaction',
    description: 'a transaction cut across two files: the first file acknowledges only what was before it (ack_lsn below last_lsn)',
    build: build(() => [
      { records: events('0/1A2B3C8', 3), createdAt: '2026-03-02T09:15:05.000Z', ackLsn: '0/1A2B000' },
      { records: events('0/1A2B3C8', 2).map((r) => ({ ...r, idx: r.idx + 3 })), createdAt: '2026-03-02T09:15:06.000Z', ackLsn: '0/1A2B400' },
    ]),
    expected: { ok: true, findings: [] },
  },
  {
    name: 'valid-backfill',
    description:
      'rows that predate the slot, archived from its snapshot ("backfill":"initial"), one file per UTC event date filed under it, closed by a marker; then streamed events',
    build: build(() => backfillFiles()),
    expected: { ok: true, findings: [] },
  },
  {
    name: 'valid-v1-backfill-under-seal-date',
    description: 'format 1: backfilled rows were filed under the day they were sealed; still read',
    build: build(() =>
      backfillFiles().map((f) => ({ ...f, commitDate: '2026-11-28', tweak: (d: Digest) => ({ ...d, format: DIGEST_FORMAT_V1, index: undefined }) })),
    ),
    expected: { ok: true, findings: [] },
  },
  {
    name: 'valid-crash-leftover',
    description: 'a data object stored before a crash, without its digest; its lines are byte for byte archived records (sealed again, cut differently)',
    build: async () => {
      const o = await build(basic)();
      const lines = gunzipSync(o.get(digestOf(o, 2).object_key!)!)
        .toString('utf8')
        .trimEnd()
        .split('\n');
      placeLeftover(o, 2, `${lines[0]}\n`);
      return o;
    },
    expected: { ok: true, findings: [], notes: ['superseded-copy'] },
  },
  {
    name: 'valid-backfill-leftover',
    description:
      "a data object of an initial backfill interrupted by a crash: the same rows at the same places, but under the first snapshot's WAL position (the backfill started again from a new one)",
    build: async () => {
      const o = await build(backfillFiles)();
      const lines = gunzipSync(o.get(digestOf(o, 1).object_key!)!)
        .toString('utf8')
        .trimEnd()
        .split('\n');
      placeLeftover(
        o,
        1,
        `${lines.map((l) => l.replace('"lsn":"0/1A00000"', '"lsn":"0/19F0000"').replace(/^\{"chain":"[0-9a-f]{64}"/, `{"chain":"${'ab'.repeat(32)}"`)).join('\n')}\n`,
      );
      return o;
    },
    expected: { ok: true, findings: [], notes: ['superseded-backfill-copy'] },
  },
  {
    name: 'forged-backfill-leftover',
    description: 'the same, but one row differs from the archived row: not a copy of anything archived',
    build: async () => {
      const o = await build(backfillFiles)();
      const lines = gunzipSync(o.get(digestOf(o, 1).object_key!)!)
        .toString('utf8')
        .trimEnd()
        .split('\n');
      placeLeftover(
        o,
        1,
        `${lines.map((l) => l.replace('"lsn":"0/1A00000"', '"lsn":"0/19F0000"').replace('"session_user_name":"phi_app"', '"session_user_name":"someone_else"')).join('\n')}\n`,
      );
      return o;
    },
    expected: { ok: false, findings: ['unreferenced-object'] },
  },
  {
    name: 'valid-key-rotation',
    description: 'file 1 signed with key A, file 2 with key B; both public keys given',
    keys: ['A', 'B'],
    build: build(() => {
      const [a, b] = basic();
      return [a!, { ...b!, key: KEY_B }];
    }),
    expected: { ok: true, findings: [] },
  },
  {
    name: 'valid-acknowledged-tamper',
    description: "a committed DELETE of audit_log (a tamper record), then a reviewer's acknowledgement event naming it",
    build: build(() => [
      ...basic(),
      {
        records: [{ op: 'delete', lsn: '0/1A2D000', idx: 0, row: null, extra: { tamper: true, old: OLD_ROW } }],
        createdAt: '2026-03-02T09:25:05.000Z',
        ackLsn: '0/1A2D050',
      },
      {
        records: [
          {
            op: 'insert',
            lsn: '0/1A2E000',
            idx: 0,
            row: auditRow({
              source: 'review',
              action: 'ACKNOWLEDGE',
              row_id: 'record:6',
              statement: 'restored from backup by the DBA on call, ticket 4411',
              session_user_name: 'compliance_ann',
              app_user_id: 'ann',
              table_name: null,
              schema_name: null,
              changed_columns: null,
              occurred_at: '2026-03-02 10:00:00+00',
            }),
          },
        ],
        createdAt: '2026-03-02T10:00:05.000Z',
        ackLsn: '0/1A2E050',
      },
    ]),
    expected: { ok: true, findings: [], acknowledged: ['record:6'] },
  },
  {
    name: 'valid-pruned-start',
    description: 'file 1 expired and was removed; the verifier starts at file 2, recorded earlier (--start)',
    build: async () => {
      const o = await build(() => [...basic(), third()])();
      o.delete(digestOf(o, 1).object_key!);
      o.delete(digestKey(1));
      return o;
    },
    args: (o) => ({ start: headOf(o, 2) }),
    expected: { ok: true, findings: [] },
  },
  {
    name: 'valid-expected-head',
    description: 'the head recorded by an earlier run is still there, unchanged (--expect-head)',
    build: build(basic),
    args: (o) => ({ expect_head: headOf(o, 2) }),
    expected: { ok: true, findings: [] },
  },

  // ---- what the chain records as wrong ----------------------------------------------------------
  {
    name: 'tamper-update',
    description: 'a committed UPDATE of an audit_log row: the new row at top level, the old under "old"',
    build: build(() => [
      ...basic(),
      third({
        records: [{ op: 'update', lsn: '0/1A2D000', idx: 0, row: auditRow({ id: '2', app_user_id: 'someone.else' }), extra: { tamper: true, old: OLD_ROW } }],
      }),
    ]),
    expected: { ok: false, findings: ['tamper'] },
  },
  {
    name: 'tamper-delete',
    description: 'a committed DELETE of two audit_log rows in one transaction: one finding',
    build: build(() => [
      ...basic(),
      third({
        records: [1, 2].map((i) => ({ op: 'delete', lsn: '0/1A2D000', idx: i - 1, row: null, extra: { tamper: true, old: { ...OLD_ROW, id: String(i) } } })),
      }),
    ]),
    expected: { ok: false, findings: ['tamper'] },
  },
  {
    name: 'tamper-truncate',
    description: 'a committed TRUNCATE of audit_log',
    build: build(() => [...basic(), third({ records: [{ op: 'truncate', lsn: '0/1A2D000', idx: 0, row: null, extra: { tamper: true, old: null } }] })]),
    expected: { ok: false, findings: ['tamper'] },
  },
  {
    name: 'gap',
    description: 'the slot was lost: a gap record, then rows recovered from audit_log ("backfill":"slot-lost")',
    build: build(() => [
      ...basic(),
      third({
        records: [
          {
            op: 'gap',
            lsn: '0/3000000',
            idx: -1,
            extra: {
              reason: 'replication slot pg_audit_shipper was missing',
              archived_up_to_lsn: '0/1A2C050',
              recovery: 'rows still in audit_log and not in the archive follow as backfill "slot-lost"',
            },
          },
          ...events('0/3000100', 1, { occurred_at: '2026-03-02 09:21:00+00' }).map((r) => ({ ...r, extra: { backfill: 'slot-lost' } })),
          { op: 'marker', lsn: '0/3000100', idx: 1, extra: { reason: 'backfill-complete', rows: 1, backfill: 'slot-lost' } },
        ],
      }),
    ]),
    expected: { ok: false, findings: ['gap'] },
  },
  {
    name: 'log-lines-missing',
    description:
      'the ingester read a session\'s server log line numbered past lines it never read: a "LOG LINES MISSING" event, a finding until acknowledged (here acknowledged by a reviewer, then a second one left open)',
    build: build(() => {
      const lost = (statement: string) =>
        auditRow({
          source: 'pgaudit',
          action: 'LOG LINES MISSING',
          outcome: 'failure',
          statement,
          error: 'log lines of this session never reached ingest: removed or cut before they were read; any audit event among them is lost',
          session_user_name: 'app_login',
          app_context: 'unknown',
          table_name: null,
          schema_name: null,
          row_id: null,
          changed_columns: null,
        });
      return [
        ...basic(),
        third({
          records: [
            { op: 'insert', lsn: '0/1A2D000', idx: 0, row: lost('session 674c1a2b.4d2: lines 41-57 (17) before line 58 at postgresql-Mon.csv byte 81920') },
            {
              op: 'insert',
              lsn: '0/1A2E000',
              idx: 0,
              row: auditRow({
                source: 'review',
                action: 'ACKNOWLEDGE',
                row_id: 'record:6',
                statement: 'logrotate removed the file early; retention fixed, ticket 5120',
                session_user_name: 'compliance_ann',
                app_user_id: 'ann',
                table_name: null,
                schema_name: null,
                changed_columns: null,
                occurred_at: '2026-03-02 10:00:00+00',
              }),
            },
            { op: 'insert', lsn: '0/1A2F000', idx: 0, row: lost('session 674c1a2b.4d2: lines 90 (1) before line 91 at postgresql-Mon.csv byte 99000') },
          ],
          ackLsn: '0/1A2F050',
        }),
      ];
    }),
    expected: { ok: false, findings: ['log-lines-missing'], acknowledged: ['record:6'] },
  },
  {
    name: 'acknowledgement-before-finding',
    description: 'an acknowledgement that names a record after it: it acknowledges nothing',
    build: build(() => [
      ...basic(),
      {
        records: [
          {
            op: 'insert',
            lsn: '0/1A2D000',
            idx: 0,
            row: auditRow({
              source: 'review',
              action: 'ACKNOWLEDGE',
              row_id: 'record:7',
              statement: 'pre-emptive acknowledgement',
              occurred_at: '2026-03-02 09:24:00+00',
            }),
          },
        ],
        createdAt: '2026-03-02T09:25:05.000Z',
        ackLsn: '0/1A2D050',
      },
      {
        records: [{ op: 'delete', lsn: '0/1A2E000', idx: 0, row: null, extra: { tamper: true, old: OLD_ROW } }],
        createdAt: '2026-03-02T09:30:05.000Z',
        ackLsn: '0/1A2E050',
      },
    ]),
    expected: { ok: false, findings: ['tamper'], notes: ['acknowledgement-unmatched'] },
  },

  {
    name: 'valid-ingest-receipts',
    description: "the ingester's receipts of two commits: log file bytes 0-4096 and 4096-5000, contiguous",
    build: build(() => [...basic(), third({ records: [receipt(0, 0, 4096), receipt(1, 4096, 5000)] })]),
    expected: { ok: true, findings: [] },
  },
  {
    name: 'ingest-skipped',
    description: 'receipts with a gap: bytes 4096-8192 of a log file were never ingested (an offset moved forward)',
    build: build(() => [...basic(), third({ records: [receipt(0, 0, 4096), receipt(1, 8192, 9000)] })]),
    expected: { ok: false, findings: ['ingest-skipped'] },
  },
  {
    name: 'ingest-reread',
    description: 'receipts that overlap: bytes read twice',
    build: build(() => [...basic(), third({ records: [receipt(0, 0, 4096), receipt(1, 1000, 5000)] })]),
    expected: { ok: false, findings: ['ingest-reread'] },
  },

  {
    name: 'valid-attestations',
    description: 'two attestations of the same capture configuration, two minutes apart (due every hour)',
    build: build(() => [...basic(), third({ records: [attest(0, '09:22:00', 'O'), attest(1, '09:24:00', 'O')] })]),
    expected: { ok: true, findings: [] },
  },
  {
    name: 'capture-changed',
    description: 'the second attestation shows the row trigger disabled: a change, with its window',
    build: build(() => [...basic(), third({ records: [attest(0, '09:22:00', 'O'), attest(1, '09:24:00', 'D')] })]),
    expected: { ok: false, findings: ['capture-changed'] },
  },
  {
    name: 'capture-changed-acknowledged',
    description: 'the change above (record 7), acknowledged by a reviewer after it',
    build: build(() => [
      ...basic(),
      third({
        records: [
          attest(0, '09:22:00', 'O'),
          attest(1, '09:24:00', 'D'),
          {
            op: 'insert',
            lsn: '0/1A2D000',
            idx: 2,
            row: auditRow({
              source: 'review',
              action: 'ACKNOWLEDGE',
              row_id: 'record:7',
              statement: 'migration 42 disabled it for a bulk load',
              occurred_at: '2026-03-02 09:24:30+00',
              table_name: null,
              schema_name: null,
              changed_columns: null,
            }),
          },
        ],
      }),
    ]),
    expected: { ok: true, findings: [], acknowledged: ['record:7'] },
  },
  {
    name: 'attestation-gap',
    description: 'attestations due every 60 s, 210 s apart: more than twice the interval without one',
    build: build(() => [...basic(), third({ records: [attest(0, '09:20:30', 'O', 60), attest(1, '09:24:00', 'O', 60)] })]),
    expected: { ok: false, findings: ['attestation-gap'] },
  },
  {
    name: 'attestation-gap-tail',
    description: 'attestations due every 30 s; the last at 09:23:30, the newest digest sealed at 09:25:05',
    build: build(() => [...basic(), third({ records: [attest(0, '09:23:00', 'O', 30), attest(1, '09:23:30', 'O', 30)] })]),
    expected: { ok: false, findings: ['attestation-gap'] },
  },

  // ---- damage by someone without the signing key ------------------------------------------------
  {
    name: 'record-altered',
    description: 'one byte of a record changed, file compressed again',
    build: async () => {
      const o = await build(basic)();
      editData(o, 2, (l) => [l[0]!.replace('"UPDATE"', '"SELECT"'), ...l.slice(1)]);
      return o;
    },
    expected: { ok: false, findings: ['content-altered', 'file-altered', 'record-altered'] },
  },
  {
    name: 'file-missing',
    description: 'a data file removed, its digest kept',
    build: async () => {
      const o = await build(basic)();
      o.delete(digestOf(o, 1).object_key!);
      return o;
    },
    expected: { ok: false, findings: ['missing-file'] },
  },
  {
    name: 'digest-missing',
    description: 'a file and its digest removed from the middle',
    build: async () => {
      const o = await build(() => [...basic(), third()])();
      o.delete(digestOf(o, 2).object_key!);
      o.delete(digestKey(2));
      return o;
    },
    // The walk also sees that the records of file 2 are missing between files 1 and 3.
    expected: { ok: false, findings: ['missing-digest', 'record-sequence-gap'] },
  },
  {
    name: 'first-files-missing',
    description: 'file 1 gone and no starting point given',
    build: async () => {
      const o = await build(() => [...basic(), third()])();
      o.delete(digestOf(o, 1).object_key!);
      o.delete(digestKey(1));
      return o;
    },
    expected: { ok: false, findings: ['missing-start'] },
  },
  {
    name: 'tail-cut',
    description: 'the newest file and digest removed; the head recorded earlier (--expect-head) proves it',
    build: async () => {
      const o = await build(() => [...basic(), third()])();
      o.delete(digestOf(o, 3).object_key!);
      o.delete(digestKey(3));
      return o;
    },
    args: async () => ({ expect_head: headOf(await build(() => [...basic(), third()])(), 3) }),
    expected: { ok: false, findings: ['tail-missing'] },
  },
  {
    name: 'leftover-past-head',
    description: 'a data object past the newest digest, with no digest of its own: a shipper stopped between the file and its digest, or an added file',
    build: async () => {
      const o = await build(basic)();
      const d = digestOf(o, 2);
      const content = '{"seq":99}\n';
      const key = d.object_key!.replace(
        /\/000000000002-[0-9a-f]{16}\.jsonl\.gz$/,
        `/000000000003-${createHash('sha256').update(content).digest('hex').slice(0, 16)}.jsonl.gz`,
      );
      o.set(key, gzipSync(Buffer.from(content)));
      return o;
    },
    expected: { ok: false, findings: ['unreferenced-object'] },
  },
  {
    name: 'forged-leftover',
    description: "a data object no digest names, carrying a real record's seq and chain value over a made-up body",
    build: async () => {
      const o = await build(basic)();
      const first = gunzipSync(o.get(digestOf(o, 2).object_key!)!)
        .toString('utf8')
        .split('\n')[0]!;
      placeLeftover(o, 2, `${first.replace('"dr.alice"', '"dr.bob"')}\n`);
      return o;
    },
    expected: { ok: false, findings: ['unreferenced-object'] },
  },
  {
    name: 'fabricated-leftover',
    description: 'a leftover whose record chains correctly from the archived chain, but is not the archived record',
    build: async () => {
      const o = await build(basic)();
      const d = digestOf(o, 2);
      const first = openRecord(gunzipSync(o.get(d.object_key!)!).toString('utf8').split('\n')[0]!)!;
      const body = first.body.replace('"dr.alice"', '"dr.bob"');
      placeLeftover(o, 2, `{"chain":"${chainHash(d.prev_chain as ChainHash, body)}",${body.slice(1)}\n`);
      return o;
    },
    expected: { ok: false, findings: ['unreferenced-object'] },
  },
  {
    name: 'foreign-object',
    description: 'an object outside the archive layout',
    build: async () => {
      const o = await build(basic)();
      o.set('notes.txt', Buffer.from('hello'));
      return o;
    },
    expected: { ok: false, findings: ['foreign-object'] },
  },
  {
    name: 'unknown-key',
    description: 'file 2 signed with a key the verifier was not given',
    build: build(() => {
      const [a, b] = basic();
      return [a!, { ...b!, key: KEY_B }];
    }),
    // Its data file is then named by no digest that verified.
    expected: { ok: false, findings: ['bad-digest', 'unreferenced-object'] },
  },
  {
    name: 'digest-edited-unsigned',
    description: 'a digest field changed without signing again',
    build: async () => {
      const o = await build(basic)();
      o.set(digestKey(1), Buffer.from(o.get(digestKey(1))!.toString('utf8').replace('"record_count":3', '"record_count":2')));
      return o;
    },
    // File 1 is then unproven: its data is named by nothing verified, and file 2 starts after records nobody vouches for.
    expected: { ok: false, findings: ['bad-digest', 'broken-digest-link', 'record-sequence-gap', 'unreferenced-object'] },
  },

  // ---- an insider with the signing key ----------------------------------------------------------
  {
    name: 'insider-event-range',
    description: "last_event_at moved earlier than the file's newest event (hides it from later time ranges)",
    build: build(() => {
      const [a, b] = basic();
      return [a!, { ...b!, tweak: (d) => ({ ...d, last_event_at: '2026-03-02 09:15:00+00' }) }];
    }),
    expected: { ok: false, findings: ['digest-event-range'] },
  },
  {
    name: 'insider-positions',
    description: "first_lsn that is not the first record's",
    build: build(() => {
      const [a, b] = basic();
      return [a!, { ...b!, tweak: (d) => ({ ...d, first_lsn: '0/1A2B3C8' }) }];
    }),
    expected: { ok: false, findings: ['digest-positions'] },
  },
  {
    name: 'insider-index-omits-key',
    description: "a data digest signed with a key index that leaves out the file's keys (a search for them would skip the file)",
    build: build(() => {
      const [a, b] = basic();
      return [
        a!,
        {
          ...b!,
          tweak: (d) => ({ ...d, index: { ...d.index!, bloom: Buffer.alloc(Buffer.from(d.index!.bloom, 'base64').length).toString('base64') } }),
        },
      ];
    }),
    expected: { ok: false, findings: ['index-mismatch'] },
  },
  {
    name: 'insider-index-missing',
    description: 'a data digest of format 3 without its key index',
    build: build(() => {
      const [a, b] = basic();
      return [a!, { ...b!, tweak: (d) => ({ ...d, index: undefined }) }];
    }),
    expected: { ok: false, findings: ['bad-digest-field'] },
  },
  {
    name: 'insider-ack-regressed',
    description: "ack_lsn lower than the previous digest's",
    build: build(() => {
      const [a, b] = basic();
      return [a!, { ...b!, ackLsn: '0/1A2B000' }];
    }),
    expected: { ok: false, findings: ['ack-regressed'] },
  },
  {
    name: 'insider-created-at-regressed',
    description: "created_at an hour before the previous digest's",
    build: build(() => {
      const [a, b] = basic();
      return [a!, { ...b!, createdAt: '2026-03-02T08:20:05.000Z' }];
    }),
    expected: { ok: false, findings: ['created-at-regressed'] },
  },
  {
    name: 'insider-object-key-sequence',
    description: 'the data key names another file sequence',
    build: build(() => {
      const [a, b] = basic();
      return [a!, { ...b!, tweak: (d) => ({ ...d, object_key: d.object_key!.replace('/000000000002-', '/000000000009-') }) }];
    }),
    // The object it names lies past the head, and holds file 2's archived records: a copy.
    expected: { ok: false, findings: ['object-key-mismatch'], notes: ['superseded-copy'] },
  },
  {
    name: 'insider-object-key-hash',
    description: "the data key's hash part is not the content hash",
    build: build(() => {
      const [a, b] = basic();
      return [a!, { ...b!, tweak: (d) => ({ ...d, object_key: d.object_key!.replace(/-[0-9a-f]{16}\./, '-0123456789abcdef.') }) }];
    }),
    expected: { ok: false, findings: ['object-key-mismatch'] },
  },
  {
    name: 'insider-partition-before-events',
    description: 'filed under a commit date before its events (a time-range query would not look there)',
    build: build(() => {
      const [a, b] = basic();
      return [a!, { ...b!, commitDate: '2026-03-01' }];
    }),
    expected: { ok: false, findings: ['partition-mismatch'] },
  },
  {
    name: 'insider-partition-after-sealing',
    description: 'filed under a commit date after the day it was sealed',
    build: build(() => {
      const [a, b] = basic();
      return [a!, { ...b!, commitDate: '2026-03-09' }];
    }),
    expected: { ok: false, findings: ['partition-mismatch'] },
  },
  {
    name: 'backfill-under-seal-date',
    description: 'format 2: backfilled rows of March filed under the November day they were sealed',
    build: build(() => backfillFiles().map((f, i) => (i < 2 ? { ...f, commitDate: '2026-11-28' } : f))),
    expected: { ok: false, findings: ['partition-mismatch'] },
  },
  {
    name: 'backfill-mixed-with-streamed',
    description: 'format 2: a file that mixes backfilled and streamed events',
    build: build(() => {
      const [a, b, c] = backfillFiles();
      return [
        a!,
        { ...b!, records: [...b!.records!, { op: 'insert', lsn: '0/1A00010', idx: 0, row: auditRow({ occurred_at: '2026-03-02 23:59:59.999+00' }) }] },
        c!,
      ];
    }),
    expected: { ok: false, findings: ['bad-record-field'] },
  },
  {
    name: 'insider-unknown-op',
    description: 'a record whose op the format does not define',
    build: build(() => {
      const [a, b] = basic();
      return [a!, { ...b!, records: [{ op: 'select', lsn: '0/1A2C000', idx: 0, row: auditRow() }] }];
    }),
    expected: { ok: false, findings: ['bad-record-field'] },
  },
  {
    name: 'insider-unknown-backfill',
    description: 'a backfill tag the format does not define',
    build: build(() => {
      const [a, b] = basic();
      return [a!, { ...b!, records: events('0/1A2C000', 1).map((r) => ({ ...r, extra: { backfill: 'imported' } })) }];
    }),
    expected: { ok: false, findings: ['bad-record-field'] },
  },
  {
    name: 'insider-delete-without-tamper-flag',
    description: 'a DELETE of audit_log recorded without "tamper":true',
    build: build(() => [...basic(), third({ records: [{ op: 'delete', lsn: '0/1A2D000', idx: 0, row: null, extra: { old: OLD_ROW } }] })]),
    // Still a tamper finding: what the record is, is a change of audit_log, whatever flag it carries.
    expected: { ok: false, findings: ['bad-record-field', 'tamper'] },
  },
  {
    name: 'insider-heartbeat-with-file',
    description: 'a heartbeat that names records',
    build: build(() => {
      const [a, b] = basic();
      return [a!, { kind: 'heartbeat', createdAt: '2026-03-02T09:17:00.000Z', ackLsn: '0/1A2BF00', tweak: (d) => ({ ...d, first_seq: 4 }) }, b!];
    }),
    expected: { ok: false, findings: ['bad-heartbeat'] },
  },
  {
    name: 'insider-heartbeat-position',
    description: "a heartbeat that says the chain's last record sits elsewhere",
    build: build(() => {
      const [a, b] = basic();
      return [a!, { kind: 'heartbeat', createdAt: '2026-03-02T09:17:00.000Z', ackLsn: '0/1A2BF00', tweak: (d) => ({ ...d, last_idx: 7 }) }, b!];
    }),
    expected: { ok: false, findings: ['bad-heartbeat'] },
  },
  {
    name: 'insider-unreadable-lsn',
    description: 'a digest whose last_lsn is not an LSN (verify must say so, not stop)',
    build: build(() => {
      const [a, b] = basic();
      return [{ ...a!, tweak: (d) => ({ ...d, last_lsn: 'zz' }) }, b!];
    }),
    expected: { ok: false, findings: ['bad-digest-field', 'digest-positions'] },
  },
  {
    name: 'insider-source-changed',
    description: 'file 2 claims another database',
    build: build(() => {
      const [a, b] = basic();
      return [a!, { ...b!, source: { database: 'billing' } }];
    }),
    expected: { ok: false, findings: ['source-changed'] },
  },
  {
    name: 'insider-rewrote-head',
    description: 'the head re-signed with another created_at after a report recorded it (--expect-head)',
    build: build(() => {
      const [a, b] = basic();
      return [a!, { ...b!, tweak: (d) => ({ ...d, created_at: '2026-03-02T09:21:00.000Z' }) }];
    }),
    args: async () => ({ expect_head: headOf(await build(basic)(), 2) }),
    expected: { ok: false, findings: ['expected-head-changed'] },
  },
];
