import { afterAll, afterEach } from 'vitest';
import { killStrays } from './helpers/cli.js';
import { dropCreatedSlots } from './helpers/db.js';

afterEach(() => {
  killStrays();
});

afterAll(async () => {
  // Unit tests run without the services; there is nothing to drop then.
  if (process.env.TEST_DATABASE_URL) await dropCreatedSlots();
});
