/**
 * `npm run conformance`: writes the conformance corpus under test/conformance/corpus/ (see
 * docs/format.md, "Conformance corpus"). Each case is a folder: `archive/` (the objects, as a
 * file:// archive), `case.json` (what it is, the verifier's inputs, the expected verdict). The
 * public keys are in `keys/`. Run it after changing a case; the tests check the committed corpus.
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CASES } from './cases.js';
import { judge, keysFor, KEYS } from './judge.js';
import { memoryReader } from './build.js';

// dist/test/conformance/generate.js -> test/conformance/corpus
const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..', '..', 'test', 'conformance', 'corpus');

async function main(): Promise<void> {
  await rm(root, { recursive: true, force: true });
  await mkdir(path.join(root, 'keys'), { recursive: true });
  for (const [name, k] of Object.entries(KEYS)) {
    await writeFile(path.join(root, 'keys', `${name}.pem`), k.publicKey.export({ type: 'spki', format: 'pem' }) as string);
  }
  let failed = 0;
  for (const c of CASES) {
    const objects = await c.build();
    const args = c.args ? await c.args(objects) : {};
    const dir = path.join(root, c.name);
    for (const [key, body] of objects) {
      await mkdir(path.dirname(path.join(dir, 'archive', key)), { recursive: true });
      await writeFile(path.join(dir, 'archive', key), body);
    }
    const keys = (c.keys ?? ['A']).map((k) => `keys/${k}.pem`);
    await writeFile(
      path.join(dir, 'case.json'),
      `${JSON.stringify({ description: c.description, verify_keys: keys, ...args, expected: c.expected }, null, 2)}\n`,
    );
    const got = await judge(memoryReader(objects), keysFor(c.keys), args);
    const same = JSON.stringify(got) === JSON.stringify(c.expected);
    if (!same) failed++;
    process.stdout.write(`${same ? 'ok  ' : 'DIFF'} ${c.name}${same ? '' : `: expected ${JSON.stringify(c.expected)}, verify says ${JSON.stringify(got)}`}\n`);
  }
  process.stdout.write(`${CASES.length} cases written to ${root}${failed ? `; ${failed} disagree with verify` : ''}\n`);
  if (failed) process.exitCode = 1;
}

await main();
