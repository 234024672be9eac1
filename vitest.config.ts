import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'src/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    setupFiles: ['test/setup.ts'],
    // Containers for the services where a runtime answers (TEST_BACKEND=containers); otherwise a no-op.
    globalSetup: ['test/global-setup.ts'],
    pool: 'forks',
    // Two cores: more workers only add contention against the database server.
    maxWorkers: 2,
  },
});
