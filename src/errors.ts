/**
 * Exit statuses are part of the CLI contract: 0 success, 1 the command ran and found a problem,
 * 2 it could not run. Every error that reaches the top carries one line an operator can act on.
 */
export const EXIT_OK = 0;
export const EXIT_FINDINGS = 1;
export const EXIT_CANNOT_RUN = 2;

/** A setting is missing or wrong. The message names the setting and the fix. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** A service (database, storage) cannot be reached or refuses us. */
export class ServiceError extends Error {
  override name = 'ServiceError';
}

/** The command ran and found problems (verification findings and the like). */
export class FindingsError extends Error {
  override name = 'FindingsError';
}

export function exitCodeFor(err: unknown): number {
  return err instanceof FindingsError ? EXIT_FINDINGS : EXIT_CANNOT_RUN;
}

/** One line, without a stack, for stderr. */
export function oneLine(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.replace(/\s*\n\s*/g, ' ').trim();
}
