import type pg from 'pg';
import { setTimeout as sleep } from 'node:timers/promises';
import { ServiceError } from '../errors.js';
import { formatLsn, parseLsn, type Lsn } from '../source/lsn.js';
import { slotConfirmed } from '../source/slot.js';
import { IdSet } from '../ship/id-set.js';
import type { Finding } from './findings.js';

/** rows read a page, in id order */
const PAGE = 50_000;
/** runs of missing rows reported one by one; the rest are counted in one finding */
const MAX_FINDINGS = 100;

/**
 * `verify --reconcile`: every audit_log row the database holds is in the archive. The archive alone
 * proves what reached it; this checks, from the other end, that nothing committed was lost on the
 * way (a shipper bug, or someone who advanced the slot by hand).
 *
 * Which rows must be archived is decided without timing guesses:
 * 1. in one REPEATABLE READ transaction, the WAL insert position `L` is read and the ids the
 *    snapshot sees are collected (as runs: audit_log ids come from one sequence). Every transaction
 *    the snapshot sees wrote its commit record before `L`;
 * 2. the shipper's slot must be confirmed at or past `L` (a running shipper gets there within
 *    seconds; this waits up to `waitMs`): the shipper confirms only what is stored, so every row
 *    collected is in the archive by then, unless something was lost;
 * 3. the archive is walked after that (the caller), collecting the ids of its `insert` records;
 * 4. ids collected in 1 and absent from 3 are lost rows.
 * Rows committed after the snapshot are not asked about; rows deleted from audit_log are not there
 * to ask about (their deletion is archived itself, as tamper).
 */
export class Reconciliation {
  private constructor(
    private readonly client: pg.Client,
    private readonly slot: string,
    readonly position: Lsn,
    private readonly inDatabase: IdSet,
    /** rows the snapshot saw */
    readonly rows: number,
  ) {}

  /** Collect the database's ids, then wait until the slot is confirmed past where they were committed. */
  static async begin(client: pg.Client, slot: string, waitMs: number, onWait?: (confirmed: Lsn | null, needed: Lsn) => void): Promise<Reconciliation> {
    await confirmedOf(client, slot); // a wrong slot name is said before reading anything
    const inDatabase = new IdSet();
    let rows = 0;
    let position: Lsn;
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    try {
      // The snapshot is taken for this statement, before the function runs: every commit it sees lies before the position.
      const r = await client.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn');
      position = parseLsn(r.rows[0]!.lsn);
      for (let after: string | null = null; ;) {
        const page: pg.QueryResult<{ id: string }> = await client.query(
          'SELECT id::text AS id FROM audit.audit_log WHERE $1::bigint IS NULL OR id > $1::bigint ORDER BY id LIMIT $2',
          [after, PAGE],
        );
        for (const { id } of page.rows) inDatabase.add(id);
        rows += page.rows.length;
        if (page.rows.length < PAGE) break;
        after = page.rows.at(-1)!.id;
      }
    } catch (err) {
      throw cannotRead(err);
    } finally {
      await client.query('ROLLBACK').catch(() => undefined);
    }
    const started = Date.now();
    for (let wait = 50; ; wait = Math.min(wait * 2, 1000)) {
      const confirmed = await confirmedOf(client, slot);
      if (confirmed !== null && confirmed >= position) break;
      if (Date.now() - started > waitMs) {
        throw new ServiceError(
          `--reconcile: slot ${slot} was not confirmed past ${formatLsn(position)} (where the database's WAL was when reconciling began; the slot is at ` +
            `${confirmed === null ? 'nothing' : formatLsn(confirmed)}) within ${Math.round(waitMs / 1000)} s: a shipper must be running on that slot ` +
            '(reconciling waits until it has stored everything committed before it looked); raise --reconcile-wait if it is far behind',
        );
      }
      onWait?.(confirmed, position);
      await sleep(wait);
    }
    return new Reconciliation(client, slot, position, inDatabase, rows);
  }

  /** The rows collected that `archived` lacks, as findings: one per run of consecutive ids. */
  async findings(archived: IdSet): Promise<{ findings: Finding[]; missing: number }> {
    const runs = this.inDatabase.missingFrom(archived);
    const size = ([a, b]: [string, string]) => (a === b ? 1 : Number(b) - Number(a) + 1);
    const missing = runs.reduce((n, r) => n + size(r), 0);
    const shown = runs.slice(0, MAX_FINDINGS);
    // When each run began, for the operator (the row may be gone since: then null).
    const times = new Map<string, string | null>();
    if (shown.length > 0) {
      const r = await this.client.query<{ id: string; occurred_at: string | null }>(
        'SELECT id::text AS id, occurred_at::text AS occurred_at FROM audit.audit_log WHERE id::text = ANY($1::text[])',
        [shown.map(([first]) => first)],
      );
      for (const row of r.rows) times.set(row.id, row.occurred_at);
    }
    const findings = shown.map(([first, last]) => notArchived(first, last, size([first, last]), times.get(first) ?? null, this.slot, this.position));
    const rest = runs.slice(MAX_FINDINGS).reduce((n, r) => n + size(r), 0);
    if (rest > 0) {
      findings.push({
        code: 'not-archived',
        where: 'audit.audit_log',
        message: `and ${rest} more audit_log rows, in ${runs.length - MAX_FINDINGS} more runs, committed in the database and not in the archive`,
        detail: { rows: rest, runs: runs.length - MAX_FINDINGS },
      });
    }
    return { findings, missing };
  }
}

function notArchived(first: string, last: string, count: number, occurredAt: string | null, slot: string, position: Lsn): Finding {
  const which = count === 1 ? `row ${first}` : `rows ${first} to ${last} (${count} rows)`;
  return {
    code: 'not-archived',
    where: 'audit.audit_log',
    message:
      `audit_log ${which}${occurredAt ? ` (the first from ${occurredAt})` : ''}: committed before ${formatLsn(position)}, and slot ${slot} was ` +
      'confirmed past that, but not in the archive: lost on the way. To archive what audit_log still holds: stop the shipper, drop its slot ' +
      `(SELECT pg_drop_replication_slot('${slot}')) and start it again: it records a gap, then archives every row the archive lacks`,
    detail: { first_id: first, last_id: last, rows: count, first_occurred_at: occurredAt, position: formatLsn(position) },
  };
}

/** The slot's confirmed position; a slot that does not exist is a wrong --slot. */
async function confirmedOf(client: pg.Client, slot: string): Promise<Lsn | null> {
  const confirmed = await slotConfirmed(client, slot);
  if (confirmed === undefined)
    throw new ServiceError(`--reconcile: the database has no replication slot ${slot}: name the shipper's slot with --slot (AUDIT_SLOT)`);
  return confirmed;
}

function cannotRead(err: unknown): Error {
  const code = (err as { code?: string }).code;
  if (code === '42501') return new ServiceError("--reconcile: the login cannot read audit.audit_log: use one that can (the shipper's, or grant it SELECT)");
  if (code === '42P01' || code === '3F000')
    return new ServiceError('--reconcile: the database has no audit.audit_log: name the database the shipper streams from');
  return err as Error;
}
