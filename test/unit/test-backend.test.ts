import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { PACKAGE_ROOT } from '../../src/paths.js';

const run = promisify(execFile);

/** How `npm test` picks between containers and local processes (scripts/with-test-services.sh). */
describe('test service backend selection', () => {
  const probe = path.join(PACKAGE_ROOT, 'scripts', 'container-runtime.mjs');

  it('reports no container runtime when the configured one does not answer, so local processes are used', async () => {
    const r = await run(process.execPath, [probe], { env: { ...process.env, DOCKER_HOST: 'tcp://127.0.0.1:9', CONTAINER_PROBE_TIMEOUT_MS: '10000' } }).then(
      () => 0,
      (err: { code: number }) => err.code,
    );
    expect(r).toBe(1);
  });

  it('the script names the backend it chose and honours TEST_BACKEND', async () => {
    const script = path.join(PACKAGE_ROOT, 'scripts', 'with-test-services.sh');
    // TEST_BACKEND=containers skips starting local services and hands over to the command at once.
    const r = await run('bash', [script, 'printenv', 'TEST_BACKEND'], { env: { ...process.env, TEST_BACKEND: 'containers' } });
    expect(r.stdout.trim()).toBe('containers');
    expect(r.stderr).toMatch(/test services: containers/);
  });
});
