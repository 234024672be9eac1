import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

/** The package root, from both src/ (vitest) and dist/src/ (the built CLI). */
function findRoot(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  return here.includes(`${path.sep}dist${path.sep}`) ? path.resolve(here, '..', '..') : path.resolve(here, '..');
}

export const PACKAGE_ROOT = findRoot();
export const SQL_DIR = path.join(PACKAGE_ROOT, 'sql');
export const SCRIPTS_DIR = path.join(PACKAGE_ROOT, 'scripts');

/** The package's version, as package.json says (evidence packages record it). */
export const VERSION = readVersion();

function readVersion(): string {
  try {
    return (JSON.parse(readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown'; // a copy of dist/ without its package.json: still runs, says so in --version
  }
}
