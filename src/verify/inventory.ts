import type { ArchiveReader } from '../sink/sink.js';
import { parseDataKey } from '../sink/keys.js';
import type { Finding } from './chain.js';

/**
 * Everything stored must be accounted for by the chain: a data file no digest names (a copy under
 * another name, a file slipped in) and any object outside digests/ and data/ are findings.
 */
export async function checkInventory(reader: ArchiveReader, referenced: Set<string>): Promise<Finding[]> {
  const findings: Finding[] = [];
  for await (const key of reader.list('')) {
    if (key.startsWith('digests/')) continue; // the chain walk judged these
    if (key.startsWith('data/')) {
      if (referenced.has(key)) continue;
      const parsed = parseDataKey(key);
      findings.push({
        code: 'unreferenced-object', where: key,
        message: parsed
          ? `a data file for file ${parsed.fileSeq} that no signed digest names (a copy, or a leftover of an interrupted write that was never sealed)`
          : 'an object in the data folder that no signed digest names',
      });
      continue;
    }
    findings.push({ code: 'foreign-object', where: key, message: 'an object that is not part of the archive layout' });
  }
  return findings;
}
