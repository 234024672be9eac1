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
