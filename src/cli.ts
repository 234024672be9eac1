#!/usr/bin/env node
// The SDK's multi-line notice about future Node versions would break the one-line error contract;
// the lockfile pins the SDK and package.json states the supported Node versions.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
import { CommanderError } from 'commander';
import { EXIT_CANNOT_RUN, exitCodeFor, oneLine } from './errors.js';
import { buildProgram } from './program.js';
import { describeStorageError } from './sink/retry.js';

export async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv);
    return process.exitCode === undefined ? 0 : Number(process.exitCode);
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end here too, with exit code 0; usage errors were already printed.
      return err.exitCode === 0 ? 0 : EXIT_CANNOT_RUN;
    }
    const storage = describeStorageError(err);
    process.stderr.write(`pg-audit-shipper: error: ${storage ? `storage request failed: ${storage}` : oneLine(err)}\n`);
    return exitCodeFor(err);
  }
}

main(process.argv).then((code) => {
  // Exit once stdout is flushed, even if a library left a handle open: a finished command must end.
  process.stdout.write('', () => process.exit(code));
});
