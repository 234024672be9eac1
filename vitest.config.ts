import { defineConfig } from 'vitest/config';

/**
 * Tests that change cluster-wide roles the way an attacker would (a CREATEROLE holder granting itself
 * audit_owner) run after everything else: every shipper attests role memberships, and another test's
 * archive would rightly report the change.
 */
const ROLE_CHANGING = ['test/integration/attestation.test.ts'];

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
      { extends: true, test: { name: 'suite', include: ['test/**/*.test.ts', 'src/**/*.test.ts'], exclude: ROLE_CHANGING, sequence: { groupOrder: 0 } } },
      { extends: true, test: { name: 'role-changing', include: ROLE_CHANGING, sequence: { groupOrder: 1 } } },
    ],
  },
});
