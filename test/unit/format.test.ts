import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createPublicKey, verify } from 'node:crypto';
import { murmur3 } from '../../src/seal/key-index.js';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { chainHash, GENESIS_CHAIN, openRecord, type ChainHash } from '../../src/seal/record.js';
import { openDigest, sha256Hex } from '../../src/seal/digest.js';
import { buildArchive, KEY_A, KEY_B, resetIds } from '../conformance/build.js';
import { everyKind } from '../conformance/cases.js';

const doc = readFileSync(path.resolve('docs/format.md'), 'utf8');

async function vectorArchive() {
  resetIds();
  return buildArchive(everyKind());
}

describe('docs/format.md test vectors', () => {
  it("quotes every line of every object of the vector archive exactly as the sealer writes it, with each digest's hash", async () => {
    const objects = await vectorArchive();
    expect(objects.size).toBe(7);
    for (const [key, body] of objects) {
      expect(doc).toContain(key.split('/').pop()!);
      const text = key.endsWith('.gz') ? gunzipSync(body).toString('utf8') : body.toString('utf8');
      for (const line of text.trimEnd().split('\n')) expect(doc, `${key}: ${line.slice(0, 60)}…`).toContain(`\n${line}\n`);
      if (key.startsWith('digests/')) expect(doc).toContain(sha256Hex(body));
    }
  });

  it('the chain rule as documented reproduces every chain hash from the lines alone, across files and the heartbeat', async () => {
    const objects = await vectorArchive();
    let prev = GENESIS_CHAIN as ChainHash;
    const dataKeys = [...objects.keys()].filter((k) => k.startsWith('data/')).sort();
    for (const key of dataKeys) {
      for (const line of gunzipSync(objects.get(key)!).toString('utf8').trimEnd().split('\n')) {
        const { claimed, body } = openRecord(line)!;
        expect(body).toBe(`{${line.slice(76)}`);
        prev = chainHash(prev, body);
        expect(prev).toBe(claimed);
      }
    }
  });

  it('the documented public key verifies every documented digest, and its key id is its SPKI hash', () => {
    const pem = /-----BEGIN PUBLIC KEY-----[\s\S]+?-----END PUBLIC KEY-----/.exec(doc)![0];
    const pub = createPublicKey(pem);
    expect(doc).toContain(`key_id: ${KEY_A.keyId}`);
    expect(sha256Hex(pub.export({ type: 'spki', format: 'der' }))).toBe(KEY_A.keyId);
    const digests = [...doc.matchAll(/\n(\{"format":"pg-audit-shipper\/digest\/3"[^\n]+)\n(\{"signature":"[^\n]+)\n/g)];
    expect(digests.length).toBe(4);
    let prevSha: string | null = null;
    for (const [, line1, line2] of digests) {
      expect(verify(null, Buffer.from(`${line1}\n`), pub, Buffer.from(JSON.parse(line2!).signature, 'base64'))).toBe(true);
      const bytes = Buffer.from(`${line1}\n${line2}\n`);
      const opened = openDigest(bytes, new Map([[KEY_A.keyId, KEY_A]]));
      expect(opened.ok).toBe(true);
      if (opened.ok) expect(opened.digest.prev_digest_sha256).toBe(prevSha);
      prevSha = sha256Hex(bytes);
    }
    // Key B, the rotated key the corpus uses, is documented by its seed.
    expect(doc).toContain('seed `20 21 … 3f`');
    expect(KEY_B.keyId).not.toBe(KEY_A.keyId);
  });

  it("the key index example recomputes by the documented rule alone, and is file 1's index as the sealer writes it", async () => {
    const documented = JSON.parse(/`"index":(\{"keys":1[^`]+\})`/.exec(doc)![1]!) as { bits: number; hashes: number; bloom: string };
    // Section 4.4, written from the text: murmur3 (held to its published vectors in key-index.test.ts) seeded 0, then with h1; (h1 + i*h2) mod m, bit j of byte j >> 3.
    const key = Buffer.from('row=7', 'utf8');
    const h1 = murmur3(key, key.length, 0);
    const h2 = murmur3(key, key.length, h1);
    expect(doc).toContain(`*h1* = \`${h1.toString(16).padStart(8, '0')}\`, *h2* =\n\`${h2.toString(16).padStart(8, '0')}\``);
    const filter = Buffer.alloc(Math.ceil(documented.bits / 8));
    for (let i = 0; i < documented.hashes; i++) {
      const j = (h1 + i * h2) % documented.bits;
      filter[j >> 3] = filter[j >> 3]! | (1 << (j & 7));
    }
    expect(filter.toString('base64')).toBe(documented.bloom);
    const objects = await vectorArchive();
    const line1 = objects.get('digests/000000000001.digest')!.toString('utf8').split('\n')[0]!;
    expect((JSON.parse(line1) as { index: unknown }).index).toEqual(documented);
  });

  it('a changed byte anywhere breaks the signature or the chain', async () => {
    const objects = await vectorArchive();
    const digest = objects.get('digests/000000000001.digest')!;
    const bad = Buffer.from(digest.toString().replace('"record_count":2', '"record_count":3'));
    expect(openDigest(bad, new Map([[KEY_A.keyId, KEY_A]]))).toMatchObject({ ok: false, problem: 'digest signature does not match its content' });
    const [l1, l2] = gunzipSync(objects.get([...objects.keys()].find((k) => k.startsWith('data/'))!)!)
      .toString('utf8')
      .split('\n');
    const { body } = openRecord(l2!.replace('UPDATE', 'DELETE'))!;
    expect(chainHash(openRecord(l1!)!.claimed as ChainHash, body)).not.toBe(openRecord(l2!)!.claimed);
  });

  it('names every finding code the verifier can report', () => {
    const dir = path.resolve('src/verify');
    const codes = new Set<string>();
    for (const f of ['chain.ts', 'links.ts', 'file.ts', 'records.ts', 'recorded.ts', 'receipts.ts', 'inventory.ts', 'completeness.ts']) {
      const src = readFileSync(path.join(dir, f), 'utf8');
      for (const m of src.matchAll(/(?:code: |add\()'([a-z-]+)'/g)) codes.add(m[1]!);
    }
    expect(codes.size).toBeGreaterThan(30);
    const missing = [...codes].filter((c) => !doc.includes(`\`${c}\``));
    expect(missing).toEqual([]);
  });
});
