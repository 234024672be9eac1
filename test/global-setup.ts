import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { StartedTestContainer } from 'testcontainers';
import { PACKAGE_ROOT } from '../src/paths.js';

/**
 * Where a container runtime answers (a laptop with Docker, a hosted CI), scripts/with-test-services.sh
 * sets TEST_BACKEND=containers and the services start here instead: PostgreSQL built from the same
 * docker/postgres image the compose stack uses (with the test cluster's settings) and MinIO, with
 * the same TEST_* coordinates the local processes export. Without a runtime this does nothing.
 * Environment set here is inherited by the test workers, which start afterwards.
 */
const MINIO_IMAGE = 'minio/minio:RELEASE.2025-04-22T22-12-26Z';

export default async function setup(): Promise<(() => Promise<void>) | void> {
  const teardown = await startContainers();
  await clusterRoles();
  return teardown;
}

/**
 * The cluster-wide roles (init's, and the test logins) exist before any test file starts: every
 * shipper attests role memberships, and a role created while another test's shipper runs would be
 * a change its archive reports. Once per run (each vitest project calls this).
 */
async function clusterRoles(): Promise<void> {
  if (!process.env.TEST_DATABASE_URL || process.env.TEST_ROLES_READY) return;
  process.env.TEST_ROLES_READY = '1';
  const { freshDatabase } = await import('./helpers/db.js');
  await freshDatabase('roles');
}

async function startContainers(): Promise<(() => Promise<void>) | void> {
  if (process.env.TEST_BACKEND !== 'containers') return;
  // Each project of vitest.config.ts runs its global setup, in one process: start the services once.
  if (process.env.TEST_CONTAINERS_STARTED) return;
  process.env.TEST_CONTAINERS_STARTED = '1';
  const { GenericContainer, Wait } = await import('testcontainers');
  const started: StartedTestContainer[] = [];
  // The server log, shared with the host so `ingest` in the tests can read it (0644 files).
  const logDir = await mkdtemp(path.join(tmpdir(), 'pgas-pglog-'));
  await chmod(logDir, 0o777);
  const image = await GenericContainer.fromDockerfile(path.join(PACKAGE_ROOT, 'docker', 'postgres')).build('pg-audit-shipper-test-pg', { deleteOnExit: false });
  const pg = await image
    .withEnvironment({ POSTGRES_PASSWORD: 'postgres' })
    // Tests log in as passwordless roles: trust, but still only over TLS, as the local cluster does.
    .withCopyContentToContainer([
      {
        content: 'local all all trust\nhostssl all all 0.0.0.0/0 trust\nhostssl replication all 0.0.0.0/0 trust\nhostnossl all all 0.0.0.0/0 reject\n',
        target: '/etc/postgresql/pg_hba.conf',
      },
    ])
    .withBindMounts([{ source: logDir, target: '/var/log/postgresql/audit' }])
    .withCommand([
      'postgres',
      '-c',
      'shared_preload_libraries=pgaudit',
      '-c',
      'wal_level=logical',
      '-c',
      'max_replication_slots=64',
      '-c',
      'max_wal_senders=64',
      '-c',
      'max_slot_wal_keep_size=1GB',
      '-c',
      'wal_sender_timeout=60s',
      '-c',
      'fsync=off',
      '-c',
      'full_page_writes=off',
      '-c',
      'logging_collector=on',
      '-c',
      'log_destination=csvlog',
      '-c',
      'log_directory=/var/log/postgresql/audit',
      '-c',
      'log_filename=postgresql-%Y%m%d-%H%M%S.log',
      '-c',
      'log_rotation_age=0',
      '-c',
      'log_rotation_size=0',
      '-c',
      'log_file_mode=0644',
      '-c',
      'ssl=on',
      '-c',
      'ssl_cert_file=/etc/ssl/certs/ssl-cert-snakeoil.pem',
      '-c',
      'ssl_key_file=/etc/ssl/private/ssl-cert-snakeoil.key',
      '-c',
      'hba_file=/etc/postgresql/pg_hba.conf',
    ])
    .withExposedPorts(5432)
    .withWaitStrategy(Wait.forLogMessage(/database system is ready to accept connections/, 2))
    .start();
  started.push(pg);
  const minio = await new GenericContainer(MINIO_IMAGE)
    .withCommand(['server', '/data'])
    .withEnvironment({ MINIO_ROOT_USER: 'audit-test', MINIO_ROOT_PASSWORD: 'audit-test-secret' })
    .withExposedPorts(9000)
    .withWaitStrategy(Wait.forHttp('/minio/health/ready', 9000))
    .start();
  started.push(minio);

  const host = pg.getHost();
  Object.assign(process.env, {
    TEST_DATABASE_URL: `postgresql://postgres@${host}:${pg.getMappedPort(5432)}/postgres?sslmode=no-verify`,
    TEST_PG_HOST: host,
    TEST_PG_PORT: String(pg.getMappedPort(5432)),
    TEST_PG_LOG_DIR: logDir,
    TEST_S3_ENDPOINT: `http://${minio.getHost()}:${minio.getMappedPort(9000)}`,
    TEST_S3_REGION: 'us-east-1',
    TEST_S3_ACCESS_KEY: 'audit-test',
    TEST_S3_SECRET_KEY: 'audit-test-secret',
  });
  return async () => {
    await Promise.all(started.map((c) => c.stop()));
    await rm(logDir, { recursive: true, force: true });
  };
}
