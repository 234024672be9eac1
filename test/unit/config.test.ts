import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  redactUrl,
  settingDefault,
  settingOption,
  SETTINGS,
  settingsSchema,
  validate,
  wholeNumber,
  yesNo,
  type SettingName,
  type SettingSpec,
} from '../../src/config.js';
import { buildProgram } from '../../src/program.js';

/** The message a call throws (null if it does not): the whole line, compared exactly. */
function errorOf(fn: () => unknown): string | null {
  try {
    fn();
  } catch (err) {
    return (err as Error).message;
  }
  return null;
}

describe('whole-number settings', () => {
  const schema = z.object({ batchMaxRecords: wholeNumber(1, 1_000_000), sample: wholeNumber(0) });

  it('takes digits as given on the command line or in the environment, and numbers', () => {
    expect(validate(schema, { batchMaxRecords: '10000', sample: ' 0 ' })).toEqual({ batchMaxRecords: 10000, sample: 0 });
    expect(validate(schema, { batchMaxRecords: 7, sample: '+3' })).toEqual({ batchMaxRecords: 7, sample: 3 });
  });

  it.each([
    ['abc', 'not "abc"'],
    ['1.5', 'not "1.5"'],
    ['0', 'not "0"'],
    ['-5', 'not "-5"'],
    ['2000000', 'not "2000000"'],
    ['1e3', 'not "1e3"'],
    ['0x10', 'not "0x10"'],
    ['99999999999999999999', 'not "99999999999999999999"'],
  ])('refuses %s, saying what it takes and what it got, naming the flag once', (given, got) => {
    expect(errorOf(() => validate(schema, { batchMaxRecords: given, sample: '1' }))).toBe(
      `--batch-max-records is invalid: takes a whole number from 1 to 1000000, ${got}`,
    );
  });

  it('names an open upper end as such', () => {
    expect(errorOf(() => validate(schema, { batchMaxRecords: '1', sample: '-1' }))).toBe('--sample is invalid: takes a whole number of at least 0, not "-1"');
  });
});

describe('configuration errors', () => {
  const cmd = new Command('ship').addOption(settingOption('httpPort')).addOption(settingOption('batchMaxRecords'));
  const schema = settingsSchema('httpPort', 'batchMaxRecords');

  it('name the environment variable of a setting that has one', () => {
    expect(() => validate(schema, { httpPort: 'abc', batchMaxRecords: '1' }, cmd)).toThrow(
      /^--http-port \(AUDIT_HTTP_PORT\) is invalid: takes a whole number from 0 to 65535, not "abc"$/,
    );
  });

  it('name only the flag of a setting without one', () => {
    expect(() => validate(schema, { httpPort: '1', batchMaxRecords: 'x' }, cmd)).toThrow(/^--batch-max-records is invalid: takes a whole number/);
  });

  it('durations, sizes and heads are checked by their type, in every command alike', () => {
    expect(errorOf(() => validate(settingsSchema('heartbeatInterval'), { heartbeatInterval: '1ms' }))).toBe(
      '--heartbeat-interval (AUDIT_HEARTBEAT_INTERVAL) is invalid: must be at least 1s, not 1ms',
    );
    expect(errorOf(() => validate(settingsSchema('maxHeadAge'), { maxHeadAge: 'two hours' }))).toBe(
      '--max-head-age is invalid: takes a duration such as 500ms, 5s, 10m, 1h, not "two hours"',
    );
    expect(errorOf(() => validate(settingsSchema('batchMaxBytes'), { batchMaxBytes: 'big' }))).toBe(
      '--batch-max-bytes is invalid: takes a size such as 8MiB, not "big"',
    );
    expect(validate(settingsSchema('cloudLoggingFrom'), { cloudLoggingFrom: '2026-12-01T06:30:00Z' })).toEqual({
      cloudLoggingFrom: Date.UTC(2026, 11, 1, 6, 30),
    });
    expect(validate(settingsSchema('cloudLoggingFrom'), { cloudLoggingFrom: '2026-12-01' })).toEqual({ cloudLoggingFrom: Date.UTC(2026, 11, 1) });
    expect(errorOf(() => validate(settingsSchema('cloudLoggingFrom'), { cloudLoggingFrom: 'yesterday' }))).toBe(
      '--cloud-logging-from (AUDIT_CLOUD_LOGGING_FROM) is invalid: takes an ISO 8601 time, e.g. 2026-12-01T00:00:00Z',
    );
    expect(errorOf(() => validate(settingsSchema('expectHead'), { expectHead: '12:abc' }))).toBe(
      '--expect-head (AUDIT_EXPECT_HEAD) is invalid: takes SEQ:SHA256 as a report\'s "Head:" line prints it, not "12:abc"',
    );
    expect(validate(settingsSchema('expectHead'), { expectHead: `12:${'a'.repeat(64)}` })).toEqual({
      expectHead: { fileSeq: 12, digestSha256: 'a'.repeat(64) },
    });
    expect(validate(settingsSchema('verifyKey'), { verifyKey: ' a.pem, b.pem ,' })).toEqual({ verifyKey: ['a.pem', 'b.pem'] });
  });
});

describe('the settings registry', () => {
  it('names each setting as commander names its option, and every default parses by its own type', () => {
    for (const [name, spec] of Object.entries(SETTINGS) as [SettingName, SettingSpec][]) {
      expect(settingOption(name).attributeName(), name).toBe(name);
      if (spec.default !== undefined) expect(() => settingDefault(name), name).not.toThrow();
    }
    expect(settingDefault('batchMaxBytes')).toBe(8 << 20);
    expect(settingDefault('heartbeatInterval')).toBe(3_600_000);
  });

  it('is where every command takes its environment variables from: no command declares one of its own', () => {
    const byFlag = new Map(Object.values(SETTINGS as Record<string, SettingSpec>).map((s) => [s.flag, s]));
    const seen: string[] = [];
    const walk = (cmd: Command): void => {
      for (const o of cmd.options) {
        if (o.envVar === undefined) continue;
        seen.push(`${cmd.name()} ${o.long}`);
        expect(byFlag.get(o.long!)?.env, `${cmd.name()} ${o.long} (${o.envVar})`).toBe(o.envVar);
      }
      cmd.commands.forEach(walk);
    };
    walk(buildProgram());
    expect(seen.length).toBeGreaterThan(20);
  });
});

describe('--s3-force-path-style (AUDIT_S3_FORCE_PATH_STYLE)', () => {
  const parse = (argv: string[], env: string | undefined) => {
    const saved = process.env.AUDIT_S3_FORCE_PATH_STYLE;
    if (env === undefined) delete process.env.AUDIT_S3_FORCE_PATH_STYLE;
    else process.env.AUDIT_S3_FORCE_PATH_STYLE = env;
    try {
      const cmd = new Command('verify').exitOverride().addOption(settingOption('s3ForcePathStyle')).option('--json');
      cmd.parse(argv, { from: 'user' });
      return validate(z.object({ s3ForcePathStyle: yesNo }), cmd.opts(), cmd).s3ForcePathStyle;
    } finally {
      if (saved === undefined) delete process.env.AUDIT_S3_FORCE_PATH_STYLE;
      else process.env.AUDIT_S3_FORCE_PATH_STYLE = saved;
    }
  };

  it('is off unless asked for, and a variable saying false (or 0, or empty) keeps it off', () => {
    expect(parse([], undefined)).toBe(false);
    for (const no of ['false', '0', 'no', 'off', 'FALSE', '']) expect(parse([], no), no).toBe(false);
    for (const yes of ['true', '1', 'yes', 'on', 'True']) expect(parse([], yes), yes).toBe(true);
    expect(parse(['--s3-force-path-style'], undefined)).toBe(true);
    expect(parse(['--s3-force-path-style', '--json'], 'false')).toBe(true); // the flag wins over the environment
  });

  it('refuses anything else, naming the variable', () => {
    expect(() => parse([], 'maybe')).toThrow(
      '--s3-force-path-style (AUDIT_S3_FORCE_PATH_STYLE) is invalid: takes true or false (or 1/0, yes/no, on/off), not "maybe"',
    );
  });
});

describe('redactUrl', () => {
  it('hides every credential form libpq takes in a URL', () => {
    expect(redactUrl('postgresql://ship:s3cret@db.example/app')).toBe('postgresql://ship:***@db.example/app');
    expect(redactUrl('postgresql://ship@db.example/app?password=s3cret&sslmode=require')).toBe('postgresql://ship@db.example/app?password=***&sslmode=require');
    expect(redactUrl('postgresql://db.example/app?sslmode=verify-full&sslpassword=k3y&PASSWORD=x')).toBe(
      'postgresql://db.example/app?sslmode=verify-full&sslpassword=***&PASSWORD=***',
    );
    expect(redactUrl('postgresql://db.example/app?passfile=/etc/pgpass')).toBe('postgresql://db.example/app?passfile=/etc/pgpass');
  });
});

describe('AUDIT_STORAGE_TIMEOUT', () => {
  it('bounds every storage request (default 30 s, connecting at most 10 s), and names the variable when wrong', async () => {
    const { storageRequestHandler } = await import('../../src/sink/http.js');
    expect(storageRequestHandler({})).toEqual({ connectionTimeout: 10_000, requestTimeout: 30_000, throwOnRequestTimeout: true });
    expect(storageRequestHandler({ AUDIT_STORAGE_TIMEOUT: '2s' })).toEqual({ connectionTimeout: 2000, requestTimeout: 2000, throwOnRequestTimeout: true });
    for (const bad of ['0', 'soon', '5h']) {
      expect(() => storageRequestHandler({ AUDIT_STORAGE_TIMEOUT: bad })).toThrow(/^AUDIT_STORAGE_TIMEOUT ".*" is not a duration between 100ms and 1h/);
    }
  });
});

describe('clock skew', () => {
  it('measures the server clock against the middle of the round trip, and names the direction and size beyond a minute', async () => {
    const { measureSkew, skewProblem } = await import('../../src/ship/clock.js');
    let t = 1_000_000;
    const local = () => (t += 100); // 100 ms per reading: the server answered between 1_000_100 and 1_000_200
    expect(await measureSkew(async () => 1_000_150 + 90_000, local)).toBe(90_000);
    expect(skewProblem(59_000)).toBeNull();
    expect(skewProblem(-59_000)).toBeNull();
    expect(skewProblem(400 * 86_400_000)).toMatch(/^this machine's clock is 400 days behind the database server's/);
    expect(skewProblem(-2 * 3_600_000)).toMatch(/^this machine's clock is 2 h ahead of the database server's/);
  });
});
