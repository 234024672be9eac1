import type { Command } from 'commander';
import { Option } from 'commander';
import { z } from 'zod';
import { settingOption, settingsSchema, validate } from '../config.js';
import { connect, describePgError, inTransaction } from '../db.js';
import { ConfigError, ServiceError } from '../errors.js';

/**
 * `acknowledge record:<seq> --reason ...`: a reviewer's statement that a finding the chain records
 * (a committed change of audit_log, a streaming gap) was looked into. It is an audit event, so it
 * travels through the chain after the finding, signed like everything else; `verify` then reports
 * the finding as acknowledged, with who, when and why, and exits 0 for it.
 */
export function registerAcknowledgeCommand(program: Command): void {
  program
    .command('acknowledge')
    .description('record, through the audit trail, that a person reviewed a finding verify reported with an id (tamper, gap, log-lines-missing)')
    .argument('<finding>', 'the finding id verify printed, e.g. record:1234')
    .addOption(settingOption('databaseUrl'))
    .addOption(new Option('--reason <text>', 'what the review found (archived with the acknowledgement)'))
    .addOption(settingOption('reviewer'))
    .action(async (finding: string, raw, cmd: Command) => {
      const cfg = validate(settingsSchema('databaseUrl', 'reviewer').extend({ reason: z.string().optional() }), raw, cmd);
      if (!/^record:[1-9]\d*$/.test(finding)) {
        throw new ConfigError(
          `<finding> ${JSON.stringify(finding)} is not a finding id: use the id verify prints before a tamper, gap or log-lines-missing finding, e.g. record:1234`,
        );
      }
      if (!cfg.reason || cfg.reason.trim().length < 10) {
        throw new ConfigError('--reason is required (at least 10 characters): say what the review found; it is archived with the acknowledgement');
      }
      const client = await connect(cfg.databaseUrl, 'pg-audit-shipper acknowledge');
      try {
        const id = await inTransaction(client, async () => {
          if (cfg.reviewer) await client.query(`SELECT set_config('app.user_id', $1, true)`, [cfg.reviewer]);
          const r = await client.query<{ id: string }>('SELECT audit.acknowledge_finding($1, $2)::text AS id', [finding, cfg.reason!.trim()]);
          return r.rows[0]!.id;
        });
        process.stdout.write(
          `acknowledged ${finding} as audit event ${id}; it is archived with the next shipped file, and verify reports the finding as acknowledged from then on\n`,
        );
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (code === '42883' || code === '3F000') {
          throw new ServiceError('this database has no audit.acknowledge_finding: run `pg-audit-shipper init` (as a superuser) to upgrade the audit schema');
        }
        if (code === '42501') {
          throw new ServiceError(
            `the login may not acknowledge findings: ${describePgError(err)}; grant it the reviewer role: GRANT audit_reviewer TO <login>`,
          );
        }
        throw new ServiceError(`acknowledging ${finding} failed: ${describePgError(err)}`);
      } finally {
        await client.end().catch(() => undefined);
      }
    });
}
