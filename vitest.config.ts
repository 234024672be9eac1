import { defineConfig } from 'vitest/config';

/**
 * Tests that change the whole cluster run after everything else, one file at a time: granting
 * cluster-wide roles the way an attacker would (every shipper attests role memberships, and another
 * test's archive would rightly report the change), `init` as a platform's admin role (it joins
 * audit_owner: seen once as a capture change by reconcile's archive), changing the server's logging
 * settings (jsonlog), and stopping and restarting the server.
 */
const CLUSTER_WIDE = [
  'test/integration/attestation.test.ts',
  'test/integration/platform-admin.test.ts',
  'test/integration/jsonlog.test.ts',
  'test/integration/server-restart.test.ts',
];

export default defineConfig({
  test: {
    testTimeout: 120_000,
    hookTimeout: 120_000,
    setupFiles: ['test/setup.ts'],
    // Containers for the services where a runtime answers (TEST_BACKEND=containers); otherwise a no-op.
    globalSetup: ['test/global-setup.ts'],
    pool: 'forks',
    // Two cores: more workers only add contention against the database server.
    maxWorkers: 2,
    projects: [
      { extends: true, test: { name: 'suite', include: ['test/**/*.test.ts', 'src/**/*.test.ts'], exclude: CLUSTER_WIDE, sequence: { groupOrder: 0 } } },
      { extends: true, test: { name: 'cluster-wide', include: CLUSTER_WIDE, fileParallelism: false, sequence: { groupOrder: 1 } } },
    ],
  },
});
