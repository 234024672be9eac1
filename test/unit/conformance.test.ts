import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { fileArchive } from '../../src/sink/file/file-archive.js';
import { loadVerifyKey } from '../../src/seal/keys.js';
import { CASES } from '../conformance/cases.js';
import { judge, keysFor } from '../conformance/judge.js';
import { memoryReader } from '../conformance/build.js';
import { sha256Hex } from '../../src/seal/digest.js';

const corpus = path.resolve('test/conformance/corpus');

async function listFiles(root: string, under = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(path.join(root, under), { withFileTypes: true })) {
    const rel = under ? `${under}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await listFiles(root, rel)));
    else out.push(rel);
  }
  return out.sort();
}

interface CaseFile {
  description: string;
  verify_keys: string[];
  expect_head?: string;
  start?: string;
  expected: unknown;
}

describe('conformance corpus (docs/format.md): every case gets its verdict', () => {
  it('the committed corpus holds exactly the defined cases (run `npm run conformance` after changing one)', async () => {
    const dirs = (await readdir(corpus, { withFileTypes: true }))
      .filter((e) => e.isDirectory() && e.name !== 'keys')
      .map((e) => e.name)
      .sort();
    expect(dirs).toEqual(CASES.map((c) => c.name).sort());
    expect(CASES.filter((c) => c.expected.ok).length).toBeGreaterThan(5);
    expect(CASES.filter((c) => !c.expected.ok).length).toBeGreaterThan(20);
  });

  for (const c of CASES) {
    it(`${c.name}: ${c.description}`, async () => {
      // As built now by the sealer...
      const objects = await c.build();
      const args = c.args ? await c.args(objects) : {};
      expect(await judge(memoryReader(objects), keysFor(c.keys), args)).toEqual(c.expected);
      // ...and as committed, read as another implementation would: a file:// archive, keys from PEM files.
      const dir = path.join(corpus, c.name);
      const spec = JSON.parse(await readFile(path.join(dir, 'case.json'), 'utf8')) as CaseFile;
      expect(spec.expected).toEqual(c.expected);
      const keys = new Map<string, Awaited<ReturnType<typeof loadVerifyKey>>>();
      for (const k of spec.verify_keys) {
        const vk = await loadVerifyKey(path.join(corpus, k));
        keys.set(vk.keyId, vk);
      }
      const committed = await judge(fileArchive(path.join(dir, 'archive')).reader, keys, {
        ...(spec.expect_head ? { expect_head: spec.expect_head } : {}),
        ...(spec.start ? { start: spec.start } : {}),
      });
      expect(committed).toEqual(c.expected);
      // Byte for byte: the corpus is reproducible (stored gzip, fixed clock and keys) on every Node.
      const files = await listFiles(path.join(dir, 'archive'));
      expect(files).toEqual([...objects.keys()].sort());
      for (const k of files) expect(sha256Hex(await readFile(path.join(dir, 'archive', k))), k).toBe(sha256Hex(objects.get(k)!));
    });
  }
});
