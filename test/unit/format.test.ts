import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createPublicKey, verify } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { chainHash, GENESIS_CHAIN, openRecord, type ChainHash } from '../../src/seal/record.js';
import { openDigest } from '../../src/seal/digest.js';
import { vectors } from './vectors.js';

const doc = readFileSync(path.resolve('docs/format.md'), 'utf8');

describe('docs/format.md test vectors', () => {
  const v = vectors();

  it('the records, chain hashes and content hash in the document are what the code writes', () => {
    expect(doc).toContain(v.r1.line);
    expect(doc).toContain(v.r2.line);
    expect(doc).toContain(v.r1.chain);
    expect(doc).toContain(v.r2.chain);
    expect(doc).toContain(v.digest.content_sha256!);
  });

  it('the chain rule as documented reproduces the chain from the lines alone', () => {
    let prev = GENESIS_CHAIN as ChainHash;
    for (const line of [v.r1.line, v.r2.line]) {
      const { claimed, body } = openRecord(line)!;
      expect(body).toBe(`{${line.slice(76)}`);
      prev = chainHash(prev, body);
      expect(prev).toBe(claimed);
    }
  });

  it('the digest in the document verifies with the documented public key, and the key id is its SPKI hash', () => {
    const pem = /-----BEGIN PUBLIC KEY-----[\s\S]+?-----END PUBLIC KEY-----/.exec(doc)![0];
    const pub = createPublicKey(pem);
    const block = doc.slice(doc.lastIndexOf('```\n{"format"') + 4, doc.lastIndexOf('```'));
    const [line1, line2] = block.split('\n');
    expect(line1).toBe(JSON.stringify({ ...v.digest, object_bytes: JSON.parse(line1!).object_bytes, object_sha256: JSON.parse(line1!).object_sha256 }));
    const sig = Buffer.from(JSON.parse(line2!).signature, 'base64');
    expect(verify(null, Buffer.from(`${line1}\n`), pub, sig)).toBe(true);
    const opened = openDigest(Buffer.from(`${line1}\n${line2}\n`), new Map([[v.key.keyId, { keyId: v.key.keyId, publicKey: pub }]]));
    expect(opened.ok).toBe(true);
    expect(doc).toContain(`key_id: ${v.key.keyId}`);
  });

  it('a changed byte anywhere breaks the signature or the chain', () => {
    const bad = Buffer.from(v.digestBytes.toString().replace('"record_count":2', '"record_count":3'));
    expect(openDigest(bad, new Map([[v.key.keyId, v.key]]))).toMatchObject({ ok: false, problem: 'digest signature does not match its content' });
    const { body } = openRecord(v.r2.line.replace('UPDATE', 'DELETE'))!;
    expect(chainHash(v.r1.chain, body)).not.toBe(v.r2.chain);
  });
});
