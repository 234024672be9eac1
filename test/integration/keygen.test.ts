import { execFileSync } from 'node:child_process';
import { mkdtemp, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadSigningKey, loadVerifyKey } from '../../src/seal/keys.js';
import { runCli } from '../helpers/cli.js';

describe('keygen', () => {
  it('writes an Ed25519 pair openssl can use, with a key id sha256sum reproduces', async () => {
    const dir = path.join(await mkdtemp(path.join(tmpdir(), 'pgas-keys-')), 'k');
    const r = await runCli(['keygen', '--out', dir]);
    expect(r.code).toBe(0);
    const keyId = /key id:\s+([0-9a-f]{64})/.exec(r.stdout)![1]!;
    const priv = path.join(dir, 'signing-key.pem');
    const pub = path.join(dir, 'verify-key.pem');
    expect((await stat(priv)).mode & 0o777).toBe(0o600);
    // openssl signs with our private key, node verifies with our public key, and the ids agree.
    const msg = path.join(dir, 'msg');
    await writeFile(msg, 'digest bytes');
    const sig = path.join(dir, 'msg.sig');
    execFileSync('openssl', ['pkeyutl', '-sign', '-rawin', '-inkey', priv, '-in', msg, '-out', sig]);
    const verified = execFileSync('openssl', ['pkeyutl', '-verify', '-pubin', '-rawin', '-inkey', pub, '-in', msg, '-sigfile', sig]);
    expect(verified.toString()).toMatch(/Signature Verified Successfully/);
    const der = execFileSync('openssl', ['pkey', '-pubin', '-in', pub, '-outform', 'DER']);
    const sha = execFileSync('sha256sum', { input: der }).toString().split(' ')[0];
    expect(sha).toBe(keyId);
    expect((await loadVerifyKey(pub)).keyId).toBe(keyId);

    const again = await runCli(['keygen', '--out', dir]);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/already exists: keygen never overwrites keys/);
  });

  it('accepts keys made by openssl genpkey, and refuses other key types', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'pgas-keys-'));
    const ed = path.join(dir, 'ed.pem');
    execFileSync('openssl', ['genpkey', '-algorithm', 'ed25519', '-out', ed]);
    const k = await loadSigningKey(ed);
    expect(k.privateKey.asymmetricKeyType).toBe('ed25519');
    const rsa = path.join(dir, 'rsa.pem');
    execFileSync('openssl', ['genpkey', '-algorithm', 'rsa', '-pkeyopt', 'rsa_keygen_bits:1024', '-out', rsa]);
    await expect(loadSigningKey(rsa)).rejects.toThrow(/is a rsa key; an Ed25519 key is required/);
    await expect(loadSigningKey(path.join(dir, 'none.pem'))).rejects.toThrow(/cannot be read: ENOENT/);
    // The usual mistakes get their own words: a passphrase-protected key, the public half.
    const encrypted = path.join(dir, 'enc.pem');
    execFileSync('openssl', ['genpkey', '-algorithm', 'ed25519', '-aes256', '-pass', 'pass:secret', '-out', encrypted]);
    await expect(loadSigningKey(encrypted)).rejects.toThrow(/is encrypted with a passphrase, which the shipper cannot ask for/);
    const pub = path.join(dir, 'pub.pem');
    execFileSync('openssl', ['pkey', '-in', ed, '-pubout', '-out', pub]);
    await expect(loadSigningKey(pub)).rejects.toThrow(/is a public key \(the verify key\?\)/);
  });
});
