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
