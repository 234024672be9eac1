import { hostname } from 'node:os';
import type { Queryable } from '../db.js';
import { ServiceError } from '../errors.js';

/**
 * The archive's one writer. The replication slot already admits one reader at a time, but a shipper
 * frozen (a paused VM) while another took its slot over still holds sealed files in memory, and some
 * stores ignore conditional writes (radosgw in a versioned bucket). So each shipper takes its slot's
 * lease at start, raising the generation in audit.shipper_lease, and before it stores a file's data
 * checks that the generation is still its own: a shipper that lost it writes nothing and stops. A
 * check that cannot reach the database fails like storage does, and is retried: a writer that
 * cannot confirm its lease does not write.
 */
export class WriterLease {
  private generation: number | null = null;

  constructor(
    private readonly db: Queryable,
    private readonly slot: string,
  ) {}

  async take(): Promise<number> {
    const r = await this.db
      .query<{ generation: string }>(
        `INSERT INTO audit.shipper_lease (slot_name, generation, holder, taken_at) VALUES ($1, 1, $2, now())
       ON CONFLICT (slot_name) DO UPDATE SET generation = audit.shipper_lease.generation + 1, holder = excluded.holder, taken_at = now()
       RETURNING generation::text AS generation`,
        [this.slot, `${hostname()} pid ${process.pid}`],
      )
      .catch((err: { code?: string; message?: string }) => {
        if (err.code === '42P01')
          throw new ServiceError('the audit schema is older than this shipper (no audit.shipper_lease); run `pg-audit-shipper init` (it upgrades in place)');
        if (err.code === '42501')
          throw new ServiceError(`the shipper's role may not take the writer lease (${err.message}); grant it audit_shipper and run \`pg-audit-shipper init\``);
        throw err;
      });
    this.generation = Number(r.rows[0]!.generation);
    return this.generation;
  }

  /** Why the lease is no longer this shipper's, or null while it is. */
  async lost(): Promise<string | null> {
    if (this.generation === null) return null; // not taken yet (start-up): the slot check guards that phase
    const r = await this.db.query<{ generation: string; holder: string; taken_at: Date }>(
      'SELECT generation::text AS generation, holder, taken_at FROM audit.shipper_lease WHERE slot_name = $1',
      [this.slot],
    );
    const row = r.rows[0];
    if (row && Number(row.generation) === this.generation) return null;
    return (
      `another shipper took over slot ${this.slot}${row ? ` (${row.holder}, at ${row.taken_at.toISOString()})` : ''}; ` +
      `this one's writer lease (generation ${this.generation}) is gone`
    );
  }
}
