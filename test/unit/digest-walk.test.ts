import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { sha256Hex, signDigest, type Digest } from '../../src/seal/digest.js';
import { keyIdOf, type SigningKey } from '../../src/seal/keys.js';
import { sealHeartbeat, type ArchiveHead } from '../../src/seal/sealer.js';
import { EMPTY_HEAD } from '../../src/ship/resume.js';
import type { Lsn } from '../../src/source/lsn.js';
import { DigestWalk } from '../../src/verify/links.js';

function signingKey(): SigningKey {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return { keyId: keyIdOf(publicKey), privateKey, publicKey };
}

const source = { systemIdentifier: '1', timeline: 1, database: 'd', slot: 's' };

/** Twelve heartbeat digests, linked as the shipper writes them. */
function chain(key: SigningKey): Buffer[] {
  const out: Buffer[] = [];
  let head: ArchiveHead = EMPTY_HEAD;
  for (let i = 0; i < 12; i++) {
    const hb = sealHeartbeat(head, source, key, BigInt(0x1000 + i) as Lsn, new Date(Date.UTC(2026, 10, 27, 0, i)));
    out.push(hb.objects[0]!.body);
    head = { ...head, fileSeq: hb.fileSeq, digestSha256: hb.digestSha256 };
  }
  return out;
}

/** Every finding of a walk over `digests` (null: missing), ending as a search ends. */
function walk(digests: (Buffer | null)[], key: SigningKey, signatures: 'every' | 'deferred'): string[] {
  const w = new DigestWalk(new Map([[key.keyId, key]]), 'genesis', signatures);
  const found = digests.flatMap((b, i) => w.step(i + 1, b).findings);
  found.push(...w.confirm());
  return found.map((f) => `${f.code} ${f.where}`).sort();
}

/** Digest `i` (0-based) with its first line changed and signed again by `by`. */
function resigned(digests: Buffer[], i: number, by: SigningKey, change: (d: Digest) => Digest): Buffer {
  const d = JSON.parse(digests[i]!.toString('utf8').split('\n')[0]!) as Digest;
  return signDigest(change(d), by);
}

describe('a walk that defers signatures (query) reports what checking every one (verify) reports', () => {
  const key = signingKey();
  const good = chain(key);
  const cases: [string, (Buffer | null)[]][] = [
    ['an intact chain', good],
    [
      'a signature line changed in the middle',
      good.map((b, i) => (i === 5 ? Buffer.from(b.toString().replace(/"signature":"(.)/, (_m, c: string) => `"signature":"${c === 'A' ? 'B' : 'A'}`)) : b)),
    ],
    ['the last digest signed by a stranger', good.map((b, i) => (i === 11 ? resigned(good, 11, signingKey(), (d) => ({ ...d, key_id: key.keyId })) : b))],
    [
      'a digest in the middle rewritten by a stranger',
      good.map((b, i) => (i === 4 ? resigned(good, 4, signingKey(), (d) => ({ ...d, key_id: key.keyId, ack_lsn: '0/2000' })) : b)),
    ],
    [
      'a digest missing after a forged one',
      good.map((b, i) => (i === 6 ? null : i === 5 ? resigned(good, 5, signingKey(), (d) => ({ ...d, key_id: key.keyId })) : b)),
    ],
    [
      'an unreadable digest after a forged one',
      good.map((b, i) => (i === 8 ? Buffer.from('{\n') : i === 7 ? resigned(good, 7, signingKey(), (d) => ({ ...d, key_id: key.keyId })) : b)),
    ],
  ];
  for (const [name, digests] of cases) {
    it(name, () => {
      const every = walk(digests, key, 'every');
      expect(walk(digests, key, 'deferred')).toEqual(every);
      if (name !== 'an intact chain') expect(every.some((f) => f.startsWith('bad-digest '))).toBe(true);
    });
  }

  it('a forged digest whose successor was re-linked to it is caught by the signature that vouches for both', () => {
    // A stranger rewrites digest 5 and fixes digest 6's previous-digest hash: 6 no longer verifies.
    const forged5 = resigned(good, 4, signingKey(), (d) => ({ ...d, key_id: key.keyId, ack_lsn: '0/2000' }));
    const relinked6 = resigned(good, 5, signingKey(), (d) => ({ ...d, key_id: key.keyId, prev_digest_sha256: sha256Hex(forged5) }));
    const digests = good.map((b, i) => (i === 4 ? forged5 : i === 5 ? relinked6 : b));
    expect(walk(digests, key, 'every')).toContain('bad-digest digests/000000000005.digest');
    const deferred = walk(digests, key, 'deferred');
    expect(deferred.filter((f) => f.startsWith('bad-digest') || f.startsWith('broken-digest-link')).length).toBeGreaterThan(0);
    expect(deferred).toContain('broken-digest-link digests/000000000007.digest');
    expect(deferred).toContain('bad-digest digests/000000000006.digest');
  });
});
