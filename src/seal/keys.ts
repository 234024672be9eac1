import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, readFile } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError } from '../errors.js';

/** A key id anyone can recompute: `openssl pkey -pubin -in verify-key.pem -outform DER | sha256sum`. */
export type KeyId = string & { readonly __brand: 'KeyId' };

export function keyIdOf(publicKey: KeyObject): KeyId {
  return createHash('sha256')
    .update(publicKey.export({ type: 'spki', format: 'der' }))
    .digest('hex') as KeyId;
}

export interface SigningKey {
  keyId: KeyId;
  privateKey: KeyObject;
  publicKey: KeyObject;
}
export interface VerifyKey {
  keyId: KeyId;
  publicKey: KeyObject;
}

export const SIGNING_KEY_FILE = 'signing-key.pem';
export const VERIFY_KEY_FILE = 'verify-key.pem';

/** Write an Ed25519 pair as PKCS#8 / SPKI PEM, the same formats `openssl genpkey -algorithm ed25519` uses. */
export async function keygen(outDir: string): Promise<{ keyId: KeyId; signingKeyPath: string; verifyKeyPath: string }> {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  await mkdir(outDir, { recursive: true, mode: 0o700 });
  const signingKeyPath = path.join(outDir, SIGNING_KEY_FILE);
  const verifyKeyPath = path.join(outDir, VERIFY_KEY_FILE);
  await writeNew(signingKeyPath, privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, 0o600);
  await writeNew(verifyKeyPath, publicKey.export({ type: 'spki', format: 'pem' }) as string, 0o644);
  return { keyId: keyIdOf(publicKey), signingKeyPath, verifyKeyPath };
}

async function writeNew(file: string, content: string, mode: number): Promise<void> {
  let fh;
  try {
    // O_EXCL: never overwrite a key: a lost signing key cannot be recovered, a replaced one breaks the chain.
    fh = await open(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new ConfigError(`${file} already exists: keygen never overwrites keys; choose another --out directory`);
    }
    throw new ConfigError(`cannot write ${file}: ${(err as Error).message}`);
  }
  try {
    await fh.writeFile(content);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export async function loadSigningKey(file: string): Promise<SigningKey> {
  const pem = await readKeyFile(file, '--signing-key (AUDIT_SIGNING_KEY)');
  let privateKey: KeyObject;
  // Say what the file is when it is a key of the wrong kind: the usual mistakes are the public half
  // and a passphrase-protected key.
  if (pem.includes('-----BEGIN ENCRYPTED PRIVATE KEY-----')) {
    throw new ConfigError(
      `--signing-key (AUDIT_SIGNING_KEY) ${file} is encrypted with a passphrase, which the shipper cannot ask for; ` +
        'give it an unencrypted key readable only by its user (mode 0600, or from a secret store), e.g. `openssl pkey -in KEY -out signing-key.pem`',
    );
  }
  if (pem.includes('-----BEGIN PUBLIC KEY-----') && !pem.includes('PRIVATE KEY-----')) {
    throw new ConfigError(
      `--signing-key (AUDIT_SIGNING_KEY) ${file} is a public key (the verify key?); --signing-key takes the private key, signing-key.pem from \`pg-audit-shipper keygen\``,
    );
  }
  try {
    privateKey = createPrivateKey(pem);
  } catch {
    throw new ConfigError(`--signing-key (AUDIT_SIGNING_KEY) ${file} is not a PEM private key; create one with \`pg-audit-shipper keygen --out DIR\``);
  }
  if (privateKey.asymmetricKeyType !== 'ed25519') {
    throw new ConfigError(`--signing-key (AUDIT_SIGNING_KEY) ${file} is a ${privateKey.asymmetricKeyType} key; an Ed25519 key is required`);
  }
  const publicKey = createPublicKey(privateKey);
  return { keyId: keyIdOf(publicKey), privateKey, publicKey };
}

export async function loadVerifyKey(file: string): Promise<VerifyKey> {
  const pem = await readKeyFile(file, '--verify-key (AUDIT_VERIFY_KEY)');
  let publicKey: KeyObject;
  try {
    publicKey = createPublicKey(pem);
  } catch {
    throw new ConfigError(`--verify-key (AUDIT_VERIFY_KEY) ${file} is not a PEM public key`);
  }
  if (publicKey.asymmetricKeyType !== 'ed25519') {
    throw new ConfigError(`--verify-key (AUDIT_VERIFY_KEY) ${file} is a ${publicKey.asymmetricKeyType} key; an Ed25519 key is required`);
  }
  return { keyId: keyIdOf(publicKey), publicKey };
}

async function readKeyFile(file: string, setting: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`${setting} ${file} cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}
