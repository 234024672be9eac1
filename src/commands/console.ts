import { chmod, readFile, writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { Option } from 'commander';
import { z } from 'zod';
import { durationMs, redactUrl, settingOption, settingsSchema, validate } from '../config.js';
import { ConfigError } from '../errors.js';
import { createLogger } from '../log.js';
import { openArchiveReader, parseRetention } from '../sink/open.js';
import { checkS3Storage } from '../verify/storage-s3.js';
import { accountLine, checkAccountName, CONSOLE_ROLES, hashPassword, parseAccounts, type Account, type ConsoleRole } from '../console/accounts.js';
import { databaseRecorder, notRecording } from '../console/recorder.js';
import { verifyKeysFrom } from './archive-options.js';

async function readOrNull(file: string): Promise<string | null> {
  return readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? null : Promise.reject(err)));
}

export function registerConsoleCommands(program: Command): void {
  program
    .command('console')
    .summary('the compliance console: a web page over the archive (status, search, patient access reports, evidence)')
    .description(
      'the compliance console: a web page over the archive (status, search, patient access reports, evidence)\n\n' +
        'Every answer is verified as verify and query verify it. With --database-url, every search, report and export is ' +
        'recorded in audit_log (source console) before it is shown. Runs until SIGINT/SIGTERM; exit 2: could not start',
    )
    .addOption(settingOption('archive'))
    .addOption(settingOption('verifyKey'))
    .addOption(settingOption('databaseUrl', "record the console's use in audit_log (a login with audit_console; audit_reviewer too to acknowledge findings)"))
    .addOption(settingOption('accounts', 'the local accounts file (console-account writes it); optional with --oidc-issuer'))
    .addOption(settingOption('oidcIssuer'))
    .addOption(settingOption('oidcClientId'))
    .addOption(settingOption('oidcClientSecret'))
    .addOption(settingOption('oidcGroupsClaim'))
    .addOption(settingOption('oidcInvestigators'))
    .addOption(settingOption('oidcViewers'))
    .addOption(settingOption('publicUrl'))
    .addOption(settingOption('listen'))
    .addOption(settingOption('tlsCert'))
    .addOption(settingOption('tlsKey'))
    .addOption(settingOption('sessionTtl'))
    .addOption(settingOption('verifyEvery'))
    .addOption(settingOption('minRetention'))
    .addOption(settingOption('allowShortRetention'))
    .addOption(settingOption('s3ForcePathStyle'))
    .addOption(settingOption('workers'))
    .option('--max-commit-delay <duration>', 'files are filed by commit date: look this far past a range for events committed late', '1d')
    .action(async (raw, cmd: Command) => {
      const cfg = validate(
        settingsSchema(
          'archive',
          'verifyKey',
          'databaseUrl',
          'accounts',
          'oidcIssuer',
          'oidcClientId',
          'oidcClientSecret',
          'oidcGroupsClaim',
          'oidcInvestigators',
          'oidcViewers',
          'publicUrl',
          'listen',
          'tlsCert',
          'tlsKey',
          'sessionTtl',
          'verifyEvery',
          'minRetention',
          'allowShortRetention',
          's3ForcePathStyle',
          'workers',
        )
          .partial({ databaseUrl: true, accounts: true })
          .extend({ maxCommitDelay: durationMs() }),
        raw,
        cmd,
      );
      if ((cfg.tlsCert === undefined) !== (cfg.tlsKey === undefined)) throw new ConfigError('--tls-cert and --tls-key go together: give both, or neither');
      if (!cfg.listen.loopback && cfg.tlsCert === undefined) {
        throw new ConfigError(
          `--listen ${cfg.listen.host}:${cfg.listen.port} (AUDIT_CONSOLE_LISTEN) is reachable from other machines, and without --tls-cert/--tls-key passwords and PHI would cross the network in clear: give them, or listen on 127.0.0.1 behind a TLS proxy on this host`,
        );
      }
      const keys = await verifyKeysFrom(cfg.verifyKey);
      if (keys.length === 0) throw new ConfigError('--verify-key (AUDIT_VERIFY_KEY) is required: the console shows only what these keys verify');
      const oidcGiven = cfg.oidcIssuer !== undefined;
      if (!oidcGiven && cfg.accounts === undefined) {
        throw new ConfigError(
          'nobody could sign in: give --accounts (AUDIT_CONSOLE_ACCOUNTS, local accounts), --oidc-issuer (AUDIT_CONSOLE_OIDC_ISSUER), or both',
        );
      }
      if (oidcGiven && (!cfg.oidcClientId || !cfg.oidcClientSecret)) {
        throw new ConfigError('--oidc-issuer needs --oidc-client-id (AUDIT_CONSOLE_OIDC_CLIENT_ID) and the secret in AUDIT_CONSOLE_OIDC_CLIENT_SECRET');
      }
      if (oidcGiven && cfg.oidcInvestigators.length + cfg.oidcViewers.length === 0) {
        throw new ConfigError(
          '--oidc-issuer admits nobody without --oidc-investigators or --oidc-viewers (AUDIT_CONSOLE_OIDC_INVESTIGATORS, ..._VIEWERS): name the groups',
        );
      }
      let accounts = new Map<string, Account>();
      if (cfg.accounts !== undefined) {
        const accountsText = await readOrNull(cfg.accounts);
        if (accountsText === null) {
          throw new ConfigError(
            `--accounts ${cfg.accounts} (AUDIT_CONSOLE_ACCOUNTS) does not exist: add an account with pg-audit-shipper console-account NAME --role investigator --accounts ${cfg.accounts}`,
          );
        }
        accounts = parseAccounts(accountsText, cfg.accounts);
        if (accounts.size === 0) throw new ConfigError(`--accounts ${cfg.accounts} lists no account: add one with pg-audit-shipper console-account`);
      }
      const { oidcSignIn } = await import('../console/oidc.js');
      const oidc = oidcGiven
        ? await oidcSignIn({
            issuer: cfg.oidcIssuer!,
            clientId: cfg.oidcClientId!,
            clientSecret: cfg.oidcClientSecret!,
            groupsClaim: cfg.oidcGroupsClaim,
            investigators: cfg.oidcInvestigators,
            viewers: cfg.oidcViewers,
          })
        : null;
      const tls = cfg.tlsCert && cfg.tlsKey ? { cert: await readFile(cfg.tlsCert), key: await readFile(cfg.tlsKey) } : null;
      const minimum = parseRetention(cfg.minRetention, cfg.allowShortRetention === true);
      const archive = openArchiveReader(cfg.archive, cfg.s3ForcePathStyle);
      const s3 = archive.bucket;
      const log = createLogger();
      const recorder = cfg.databaseUrl ? databaseRecorder(cfg.databaseUrl) : notRecording;
      const { buildConsole } = await import('../console/server.js');
      let listening = '';
      const { app, keeper } = await buildConsole({
        archive: { location: archive.location, reader: archive.reader, keys, maxCommitDelayMs: cfg.maxCommitDelay, workers: cfg.workers },
        accounts,
        oidc,
        publicUrl: () => cfg.publicUrl ?? listening,
        recorder,
        storage: async () => (s3 ? checkS3Storage(s3.client, s3.bucket, s3.prefix, minimum) : null),
        sessionTtlMs: cfg.sessionTtl,
        refreshMs: cfg.verifyEvery,
        tls,
        log,
      });
      await app.listen({ host: cfg.listen.host, port: cfg.listen.port });
      const address = app.server.address();
      const port = typeof address === 'object' && address ? address.port : cfg.listen.port;
      const host = cfg.listen.host.includes(':') ? `[${cfg.listen.host}]` : cfg.listen.host;
      listening = `${tls ? 'https' : 'http'}://${host}:${port}/`;
      log.info(
        { url: listening, accounts: accounts.size, oidc: oidc?.provider ?? false, recording: recorder.recording ? redactUrl(cfg.databaseUrl!) : false },
        'console: listening',
      );
      if (!recorder.recording) log.warn({}, 'console: started without --database-url: its use is not recorded in the audit trail (every page says so)');
      keeper.start();
      await new Promise<void>((resolve) => {
        const stop = () => resolve();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      log.info({}, 'console: stopping');
      await app.close();
      await keeper.stop();
      await recorder.close();
    });

  program
    .command('console-account')
    .summary("add or change a console account: the password is read from stdin's first line")
    .description(
      "add or change a console account in the accounts file (created 0600 if missing); the password is read from stdin's first line,\n" +
        'so it is in neither the command line nor the shell history. exit 0 written, 2 could not',
    )
    .argument('<name>', 'the account (letters, digits, . _ @ -)')
    .addOption(
      new Option('--role <role>', 'viewer: the status page only; investigator: also search, reports, evidence, acknowledgements')
        .choices([...CONSOLE_ROLES])
        .makeOptionMandatory(),
    )
    .addOption(settingOption('accounts'))
    .action(async (name: string, raw, cmd: Command) => {
      const cfg = validate(settingsSchema('accounts').extend({ role: z.enum(CONSOLE_ROLES) }), raw, cmd);
      checkAccountName(name);
      const chunks: Buffer[] = [];
      for await (const c of process.stdin) chunks.push(c as Buffer);
      const password = Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0] ?? '';
      if (password.length < 12) throw new ConfigError('the password (first line of stdin) must be at least 12 characters');
      const existing =
        (await readOrNull(cfg.accounts)) ?? '# pg-audit-shipper console accounts: name:role:scrypt hash (written by pg-audit-shipper console-account)\n';
      const accounts = parseAccounts(existing, cfg.accounts); // a broken file is not written over
      const line = accountLine({ name, role: cfg.role as ConsoleRole, hash: await hashPassword(password) });
      const kept = existing.split('\n').filter((l) => l.trim() === '' || l.trim().startsWith('#') || l.split(':')[0] !== name);
      const text = `${[...kept.filter((l, i) => l !== '' || i < kept.length - 1), line].join('\n')}\n`;
      await writeFile(cfg.accounts, text, { mode: 0o600 });
      await chmod(cfg.accounts, 0o600);
      process.stdout.write(`${accounts.has(name) ? 'changed' : 'added'} console account ${name} (${cfg.role}) in ${cfg.accounts}\n`);
    });
}
