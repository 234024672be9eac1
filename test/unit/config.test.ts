import { Command, Option } from 'commander';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { validate, wholeNumber } from '../../src/config.js';

describe('whole-number settings', () => {
  const schema = z.object({ batchMaxRecords: wholeNumber('--batch-max-records', 1, 1_000_000), sample: wholeNumber('--sample', 0) });

  it('takes digits as given on the command line or in the environment, and numbers', () => {
    expect(validate(schema, { batchMaxRecords: '10000', sample: ' 0 ' })).toEqual({ batchMaxRecords: 10000, sample: 0 });
    expect(validate(schema, { batchMaxRecords: 7, sample: '+3' })).toEqual({ batchMaxRecords: 7, sample: 3 });
  });

  it.each([
    ['abc', 'not "abc"'], ['1.5', 'not "1.5"'], ['0', 'not "0"'], ['-5', 'not "-5"'], ['2000000', 'not "2000000"'],
    ['1e3', 'not "1e3"'], ['0x10', 'not "0x10"'], ['99999999999999999999', 'not "99999999999999999999"'],
  ])('refuses %s, saying what it takes and what it got', (given, got) => {
    expect(() => validate(schema, { batchMaxRecords: given, sample: '1' }))
      .toThrow(`--batch-max-records is invalid: --batch-max-records takes a whole number from 1 to 1000000, ${got}`);
  });

  it('names an open upper end as such', () => {
    expect(() => validate(schema, { batchMaxRecords: '1', sample: '-1' })).toThrow('--sample takes a whole number of at least 0, not "-1"');
  });
});

describe('configuration errors', () => {
  const cmd = new Command('ship')
    .addOption(new Option('--http-port <port>').default('9898').env('AUDIT_HTTP_PORT'))
    .addOption(new Option('--batch-max-records <n>').default('10000'));
  const schema = z.object({ httpPort: wholeNumber('--http-port', 0, 65535), batchMaxRecords: wholeNumber('--batch-max-records', 1) });

  it('name the environment variable of a setting that has one', () => {
    expect(() => validate(schema, { httpPort: 'abc', batchMaxRecords: '1' }, cmd)).toThrow(/^--http-port \(AUDIT_HTTP_PORT\) is invalid: /);
  });

  it('name only the flag of a setting without one', () => {
    expect(() => validate(schema, { httpPort: '1', batchMaxRecords: 'x' }, cmd)).toThrow(/^--batch-max-records is invalid: /);
  });
});
