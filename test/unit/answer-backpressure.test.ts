import { describe, expect, it } from 'vitest';
import { answerQuery } from '../../src/query/answer.js';
import { EVERYTHING } from '../../src/query/filter.js';
import { CASES } from '../conformance/cases.js';
import { keysFor } from '../conformance/judge.js';
import { memoryReader } from '../conformance/build.js';

describe('answerQuery: a slow reader of the answer holds the search, not memory', () => {
  it('writes no file’s rows before the output has drained the rows of the file before', async () => {
    const c = CASES.find((x) => x.name === 'valid-basic')!;
    const objects = await c.build();
    const events: string[] = [];
    let waiting = false;
    await answerQuery(
      { location: 'memory://basic', reader: memoryReader(objects) },
      {
        keys: [...keysFor(c.keys).values()],
        query: EVERYTHING,
        format: 'json',
        maxCommitDelayMs: 0,
        write: (s) => {
          if (s.startsWith('{')) {
            expect(waiting).toBe(false);
            events.push('row');
          }
        },
        drained: async () => {
          waiting = true;
          events.push('wait');
          await new Promise((r) => setTimeout(r, 20));
          waiting = false;
        },
      },
    );
    // valid-basic: files of 3 and 2 events, each followed by one wait for the output.
    expect(events).toEqual(['row', 'row', 'row', 'wait', 'row', 'row', 'wait']);
  });
});
