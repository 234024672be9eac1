import { afterEach } from 'vitest';
import { killStrays } from './helpers/cli.js';

afterEach(() => {
  killStrays();
});
