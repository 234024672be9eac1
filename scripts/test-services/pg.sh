#!/usr/bin/env bash
# pg.sh start DIR [PORT] | stop DIR [--rm]
#
# A throwaway PostgreSQL 15 cluster for tests, the demo and benchmarks: wal_level=logical,
# pgaudit preloaded, csvlog logging, TLS required on TCP (self-signed certificate), and a private
# unix socket in DIR/run for local trust access. Installs the Debian packages when they are missing
# and we are root. initdb refuses root, so as root the cluster runs as the `postgres` OS user.
#
# `start` prints KEY=VALUE lines (PGDATA_DIR, PG_SOCKET_DIR, PG_PORT, DATABASE_URL, PGAUDIT_LOG_DIR)
# and writes them to DIR/env. PG_FAST=1 turns fsync off (tests and benchmarks only: not durable).
set -euo pipefail

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
PG_RUNAS=${PG_RUNAS:-postgres}
die() { echo "pg.sh: $*" >&2; exit 1; }
usage() { echo "usage: pg.sh start DIR [PORT] | pg.sh stop DIR [--rm] | pg.sh ctl DIR PG_CTL-ARGS..." >&2; exit 2; }

if [ "$(id -u)" -eq 0 ]; then as_pg() { runuser -u "$PG_RUNAS" -- "$@"; }; else as_pg() { "$@"; }; fi

ensure_packages() {
  local missing=()
  [ -x "$PGBIN/initdb" ] || missing+=(postgresql-15)
  ls /usr/lib/postgresql/15/lib/pgaudit.so >/dev/null 2>&1 || missing+=(postgresql-15-pgaudit)
  command -v openssl >/dev/null || missing+=(openssl)
  # Not PostgreSQL's, but installed with it: the clock-skew tests run the shipper under faketime.
  command -v faketime >/dev/null || missing+=(faketime)
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || die "missing Debian packages: ${missing[*]}; install them first: sudo apt-get install ${missing[*]}"
  echo "pg.sh: installing ${missing[*]} (Debian packages)" >&2
  local log; log=$(mktemp)
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    tail -n 20 "$log" >&2; die "apt-get install ${missing[*]} failed"
  fi
  rm -f "$log"
}

free_port() {
  local p
  for p in $(seq 54320 54420); do
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return 0; }
  done
  die "no free TCP port in 54320-54420"
}

start() {
  local dir port
  [ $# -ge 1 ] || usage
  dir=$(realpath -m "$1"); port=${2:-$(free_port)}
  ensure_packages
  id "$PG_RUNAS" >/dev/null 2>&1 || die "OS user $PG_RUNAS does not exist (it comes with the postgresql-15 package)"
  local data=$dir/data sock=$dir/run owner
  owner=$([ "$(id -u)" -eq 0 ] && echo "$PG_RUNAS" || id -un)
  mkdir -p "$dir" "$sock"
  chown "$owner" "$dir" "$sock"; chmod 700 "$dir"
  as_pg test -x "$dir" || die "user $owner cannot reach $dir: every parent directory must be traversable (use a directory under /tmp)"

  if [ ! -s "$data/PG_VERSION" ]; then
    as_pg "$PGBIN/initdb" -D "$data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log"
    # Self-signed server certificate: the cluster accepts TCP only over TLS, as production should.
    as_pg openssl req -new -x509 -days 30 -nodes -subj "/CN=localhost" \
      -keyout "$data/server.key" -out "$data/server.crt" >/dev/null 2>&1
    as_pg chmod 600 "$data/server.key"
    cat >>"$data/postgresql.conf" <<CONF
# ---- pg-audit-shipper test cluster ----
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$sock'
ssl = on
wal_level = logical
max_replication_slots = 64
max_wal_senders = 64
max_slot_wal_keep_size = 1GB
wal_sender_timeout = 60s
shared_preload_libraries = '${PG_PRELOAD-pgaudit}'
logging_collector = on
log_destination = 'csvlog'
log_directory = 'log'
log_filename = 'postgresql-%Y%m%d-%H%M%S.log'
log_rotation_age = 0
log_rotation_size = 0
log_file_mode = 0640
CONF
    if [ "${PG_FAST:-0}" = 1 ]; then
      printf 'fsync = off\nfull_page_writes = off\n' >>"$data/postgresql.conf"
    fi
    # Local socket: trust (tests). TCP: TLS only, plain TCP rejected.
    cat >"$data/pg_hba.conf" <<HBA
local   all          all                     trust
local   replication  all                     trust
hostssl all          all     127.0.0.1/32    trust
hostssl replication  all     127.0.0.1/32    trust
hostnossl all        all     0.0.0.0/0       reject
HBA
  fi
  if ! as_pg "$PGBIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    as_pg "$PGBIN/pg_ctl" -D "$data" -l "$dir/startup.log" -w -t 60 start >/dev/null \
      || { tail -n 20 "$dir/startup.log" >&2; die "PostgreSQL did not start (log: $dir/startup.log)"; }
  fi
  port=$(grep -E '^port = ' "$data/postgresql.conf" | tail -1 | awk '{print $3}')
  # The log directory must be readable by whoever runs `ingest` (root in tests).
  chmod 750 "$data" "$data/log" 2>/dev/null || true
  # Single-quoted so the file can be sourced (the URL holds '&').
  cat >"$dir/env" <<ENV
PGDATA_DIR='$data'
PG_SOCKET_DIR='$sock'
PG_PORT='$port'
DATABASE_URL='postgresql://postgres@localhost/postgres?host=$sock&port=$port'
PGAUDIT_LOG_DIR='$data/log'
ENV
  cat "$dir/env"
}

stop() {
  [ $# -ge 1 ] || usage
  local dir; dir=$(realpath -m "$1")
  if [ -f "$dir/data/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    as_pg "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null
  fi
  if [ "${2:-}" = "--rm" ]; then rm -rf -- "$dir"; fi
}

# pg_ctl with the cluster's data directory, as the user that owns it: the tests restart and stop
# the server to check what the shipper does then (`pg.sh ctl DIR restart -m immediate`).
ctl() {
  [ $# -ge 2 ] || usage
  local dir; dir=$(realpath -m "$1"); shift
  as_pg "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/startup.log" "$@" >/dev/null
}

cmd=${1:-}; shift || true
case "$cmd" in
  start) start "$@" ;;
  stop) stop "$@" ;;
  ctl) ctl "$@" ;;
  *) usage ;;
esac
