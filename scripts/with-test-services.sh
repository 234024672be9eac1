#!/usr/bin/env bash
# with-test-services.sh CMD [ARGS...]
# Starts the services the tests and benchmarks need as local processes (no Docker engine needed),
# runs CMD with their coordinates in the environment, and stops them whatever CMD's outcome.
#   TEST_DATABASE_URL, TEST_PG_LOG_DIR, TEST_PG_SOCKET_DIR  a PostgreSQL 15 cluster (pgaudit, wal_level=logical)
#   TEST_S3_ENDPOINT, TEST_S3_REGION, TEST_S3_ACCESS_KEY, TEST_S3_SECRET_KEY  Ceph radosgw with Object Lock
#   TEST_CHROMIUM  Debian's chromium, for the console's browser tests (installed if missing, as root)
# Set TEST_SERVICES=pg to start PostgreSQL only (quicker unit-level work).
#
# Where a container runtime answers (Docker on a laptop, a hosted CI), the services run as
# containers instead (testcontainers, started by test/global-setup.ts with the same TEST_* names).
# TEST_BACKEND=local or TEST_BACKEND=containers forces the choice.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 1 ] || { echo "usage: with-test-services.sh CMD [ARGS...]" >&2; exit 2; }
want=${TEST_SERVICES:-pg,s3,browser}

backend=${TEST_BACKEND:-}
if [ -z "$backend" ]; then
  if node "$here/container-runtime.mjs"; then backend=containers; else backend=local; fi
fi
if [ "$backend" = containers ]; then
  echo "test services: containers (testcontainers: PostgreSQL from docker/postgres, MinIO)" >&2
  TEST_BACKEND=containers exec "$@"
fi
echo "test services: local processes (no container runtime answered)" >&2

# Under /tmp: the postgres OS user must be able to traverse every parent directory.
dir=$(mktemp -d /tmp/pg-audit-shipper-test.XXXXXX)
chmod 755 "$dir"
cleanup() {
  local rc=$?
  [ -f "$dir/s3/ceph.conf" ] && bash "$here/test-services/s3.sh" stop "$dir/s3" --purge >/dev/null 2>&1 || true
  bash "$here/test-services/pg.sh" stop "$dir/pg" --rm >/dev/null 2>&1 || true
  rm -rf "$dir"
  exit $rc
}
trap cleanup EXIT INT TERM

echo "starting test PostgreSQL in $dir/pg" >&2
PG_FAST=${PG_FAST:-1} bash "$here/test-services/pg.sh" start "$dir/pg" >/dev/null
set -a; . "$dir/pg/env"; set +a
export TEST_DATABASE_URL=$DATABASE_URL TEST_PG_LOG_DIR=$PGAUDIT_LOG_DIR TEST_PG_SOCKET_DIR=$PG_SOCKET_DIR TEST_PG_PORT=$PG_PORT
# The cluster's directory, for tests that restart or stop the server (scripts/test-services/pg.sh ctl).
export TEST_PG_DIR=$dir/pg
unset DATABASE_URL PGAUDIT_LOG_DIR

if [[ ,$want, == *,s3,* ]] && [ -f "$here/test-services/s3.sh" ]; then
  echo "starting test S3 (Ceph radosgw) in $dir/s3" >&2
  # One retry: the start script begins from a clean state, and a daemon that lost a race for a port
  # on a busy machine usually comes up the second time.
  s3env=$(bash "$here/test-services/s3.sh" start "$dir/s3") || { sleep 3; s3env=$(bash "$here/test-services/s3.sh" start "$dir/s3"); }
  while IFS='=' read -r k v; do [ -n "$k" ] && export "TEST_$k=$v"; done <<<"$s3env"
fi

if [[ ,$want, == *,browser,* ]]; then
  TEST_CHROMIUM=$(bash "$here/test-services/browser.sh")
  export TEST_CHROMIUM
fi

"$@"
