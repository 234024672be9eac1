import { pino, type Logger } from 'pino';
import { ConfigError } from './errors.js';

export type { Logger };

/**
 * JSON logs on stderr (stdout belongs to command output). Redaction is a second line of defence:
 * the code never puts PHI values or statement text into log fields, but a connection string or a
 * statement that slips in is censored rather than written.
 */
export function createLogger(level: string = process.env.LOG_LEVEL || 'info'): Logger {
  if (!(level in pino.levels.values) && level !== 'silent') {
    throw new ConfigError(`LOG_LEVEL ${JSON.stringify(level)} is not a log level: use ${[...Object.keys(pino.levels.values), 'silent'].join(', ')}`);
  }
  return pino(
    {
      level,
      base: { app: 'pg-audit-shipper' },
      redact: {
        paths: [
          'password',
          '*.password',
          'databaseUrl',
          '*.databaseUrl',
          'connectionString',
          '*.connectionString',
          'statement',
          '*.statement',
          'query',
          '*.query',
          'params',
          '*.params',
          'secretAccessKey',
          '*.secretAccessKey',
        ],
        censor: '[redacted]',
      },
    },
    pino.destination({ fd: 2, sync: true }),
  );
}
