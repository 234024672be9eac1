import { randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { ConfigError } from '../errors.js';

/**
 * The console's local accounts: one line a person, `name:role:scrypt:N:r:p:salt:hash` (salt and hash
 * base64), in a file the operator manages (`pg-audit-shipper console-account` writes a line).
 * Passwords are hashed with scrypt (Node's own, RFC 7914): N=2^15 takes ~60 ms here, a guess per
 * 60 ms a core for whoever steals the file.
 */
export const CONSOLE_ROLES = ['viewer', 'investigator'] as const;
export type ConsoleRole = (typeof CONSOLE_ROLES)[number];

export interface Account {
  name: string;
  role: ConsoleRole;
  hash: string;
}

const COST = { N: 2 ** 15, r: 8, p: 1 } as const;
const KEY_BYTES = 32;
const NAME = /^[A-Za-z0-9._@-]{1,64}$/;

function scrypt(password: string, salt: Buffer, o: { N: number; r: number; p: number }): Promise<Buffer> {
  const options: ScryptOptions = { ...o, maxmem: 256 * o.N * o.r + 1024 * 1024 };
  return new Promise((resolve, reject) => scryptCb(password.normalize('NFC'), salt, KEY_BYTES, options, (err, key) => (err ? reject(err) : resolve(key))));
}

export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await scrypt(password, salt, COST);
  return `scrypt:${COST.N}:${COST.r}:${COST.p}:${salt.toString('base64')}:${key.toString('base64')}`;
}

/** A hash of a password nobody has: unknown names take as long as wrong passwords. */
const DECOY = `scrypt:${COST.N}:${COST.r}:${COST.p}:${Buffer.alloc(16).toString('base64')}:${Buffer.alloc(KEY_BYTES).toString('base64')}`;

export async function checkPassword(password: string, stored: string | undefined): Promise<boolean> {
  const [kind, n, r, p, salt, key] = (stored ?? DECOY).split(':');
  if (kind !== 'scrypt' || !salt || !key) return false;
  const want = Buffer.from(key, 'base64');
  const got = await scrypt(password, Buffer.from(salt, 'base64'), { N: Number(n), r: Number(r), p: Number(p) });
  return stored !== undefined && want.length === got.length && timingSafeEqual(want, got);
}

export function accountLine(a: Account): string {
  return `${a.name}:${a.role}:${a.hash}`;
}

export function checkAccountName(name: string): string {
  if (!NAME.test(name)) throw new ConfigError(`account name ${JSON.stringify(name)} is not one: use 1-64 letters, digits, . _ @ -`);
  return name;
}

/** The accounts file's lines (blank lines and # comments skipped); a bad line is an error naming it. */
export function parseAccounts(text: string, file: string): Map<string, Account> {
  const out = new Map<string, Account>();
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const [name = '', role = '', ...hash] = line.split(':');
    const where = `${file} line ${i + 1}`;
    if (!NAME.test(name)) throw new ConfigError(`${where}: ${JSON.stringify(name)} is not an account name (letters, digits, . _ @ -)`);
    if (!(CONSOLE_ROLES as readonly string[]).includes(role))
      throw new ConfigError(`${where}: role ${JSON.stringify(role)} is not ${CONSOLE_ROLES.join(' or ')}`);
    if (hash.length !== 6 || hash[0] !== 'scrypt') {
      throw new ConfigError(`${where}: the password hash is not one pg-audit-shipper console-account writes; write the line again with it`);
    }
    if (out.has(name)) throw new ConfigError(`${where}: account ${name} is listed twice`);
    out.set(name, { name, role: role as ConsoleRole, hash: hash.join(':') });
  });
  return out;
}
