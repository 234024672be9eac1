#!/usr/bin/env node
// The SDK's multi-line notice about future Node versions would break the one-line error contract;
// the lockfile pins the SDK and package.json states the supported Node versions.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
import { Command, CommanderError } from 'commander';
import { EXIT_CANNOT_RUN, exitCodeFor, oneLine } from './errors.js';
import { registerCaptureCommands } from './commands/capture.js';
import { registerDemoCommand } from './commands/demo.js';
import { registerShipCommand } from './commands/ship.js';
import { registerVerifyCommand } from './commands/verify.js';
import { registerRetentionCommand } from './commands/retention.js';
import { registerQueryCommands } from './commands/query.js';
import { VERSION } from './paths.js';

/**
 * pg-audit-shipper: capture (sql) -> source -> seal -> sink -> verify -> query.
 * Each subcommand lives in src/commands/; this file only assembles them and owns the exit status.
 */
export function buildProgram(): Command {
  const program = new Command('pg-audit-shipper')
    .description('A tamper-evident, retained audit trail for PostgreSQL databases holding PHI.\n\n' +
      'Exit status: 0 success, 1 the command ran and found a problem, 2 it could not run.')
    .version(VERSION)
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  registerCaptureCommands(program);
  registerShipCommand(program);
  registerVerifyCommand(program);
  registerRetentionCommand(program);
  registerQueryCommands(program);
  registerDemoCommand(program);
  const override = (cmd: Command): void => {
    cmd.exitOverride();
    cmd.commands.forEach(override);
  };
  program.commands.forEach(override);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv);
    return process.exitCode === undefined ? 0 : Number(process.exitCode);
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end here too, with exit code 0; usage errors were already printed.
      return err.exitCode === 0 ? 0 : EXIT_CANNOT_RUN;
    }
    process.stderr.write(`pg-audit-shipper: error: ${oneLine(err)}\n`);
    return exitCodeFor(err);
  }
}

main(process.argv).then((code) => {
  // Exit once stdout is flushed, even if a library left a handle open: a finished command must end.
  process.stdout.write('', () => process.exit(code));
});
