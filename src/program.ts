import { Command } from 'commander';
import { registerCaptureCommands } from './commands/capture.js';
import { registerDemoCommand } from './commands/demo.js';
import { registerShipCommand } from './commands/ship.js';
import { registerVerifyCommand } from './commands/verify.js';
import { registerAcknowledgeCommand } from './commands/acknowledge.js';
import { registerRetentionCommand } from './commands/retention.js';
import { registerQueryCommands } from './commands/query.js';
import { registerConsoleCommands } from './commands/console.js';
import { VERSION } from './paths.js';

/**
 * pg-audit-shipper: capture (sql) -> source -> seal -> sink -> verify -> query.
 * Each subcommand lives in src/commands/; this file only assembles them and owns the exit status.
 */
export function buildProgram(): Command {
  const program = new Command('pg-audit-shipper')
    .description(
      'A tamper-evident, retained audit trail for PostgreSQL databases holding PHI.\n\n' +
        'Exit status: 0 success, 1 the command ran and found a problem, 2 it could not run.',
    )
    .version(VERSION)
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  registerCaptureCommands(program);
  registerShipCommand(program);
  registerVerifyCommand(program);
  registerAcknowledgeCommand(program);
  registerRetentionCommand(program);
  registerQueryCommands(program);
  registerConsoleCommands(program);
  registerDemoCommand(program);
  const override = (cmd: Command): void => {
    cmd.exitOverride();
    cmd.commands.forEach(override);
  };
  program.commands.forEach(override);
  return program;
}
