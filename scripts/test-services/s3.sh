#!/usr/bin/env bash
# s3.sh start DIR [PORT] | stop DIR [--purge]
#
# A throwaway S3 server with Object Lock for tests and benchmarks: Ceph radosgw (Debian packages
# ceph-mon ceph-osd ceph-common radosgw) as a single-node cluster (one monitor, one memstore OSD,
# no manager, no cephx) with the S3 API on 127.0.0.1:PORT and a user with fixed keys.
# `start` prints S3_ENDPOINT / S3_REGION / S3_ACCESS_KEY / S3_SECRET_KEY lines on stdout.
# Its daemons detach into their own sessions: always call `stop` (rgw -> osd -> mon).
# Env: S3_ACCESS_KEY, S3_SECRET_KEY, S3_MON_PORT, S3_OSD_BACKEND=memstore|bluestore, S3_STORE_GB,
#      S3_READY_TIMEOUT.

start() {
set -euo pipefail


DIR=${1:?usage: s3.sh start DIR [PORT]}
PORT=${2:-}
ACCESS_KEY=${S3_ACCESS_KEY:-AUDITTESTACCESSKEY01}
SECRET_KEY=${S3_SECRET_KEY:-audit-test-secret-key-0000000000000000001}
BACKEND=${S3_OSD_BACKEND:-memstore}
STORE_GB=${S3_STORE_GB:-8}
READY_TIMEOUT=${S3_READY_TIMEOUT:-120}
MSGR_MIN=6800 MSGR_MAX=7300   # ports the OSD messenger may bind (Ceph default range)

log() { local ms=$(( $(date +%s%N) / 1000000 - T0 )); printf '[start-s3 %d.%03ds] %s\n' $((ms / 1000)) $((ms % 1000)) "$*" >&2; }
die() { printf 'start-s3: ERROR: %s\n' "$*" >&2; exit 1; }
T0=$(( $(date +%s%N) / 1000000 ))
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }   # true if something accepts on 127.0.0.1:$1

[[ $PORT =~ ^[0-9]+$ ]] && (( PORT > 0 && PORT < 65536 )) || die "bad PORT '$PORT'"
(( PORT < MSGR_MIN || PORT > MSGR_MAX )) || die "PORT $PORT is inside Ceph's OSD messenger range $MSGR_MIN-$MSGR_MAX; pick another"

# ---- 1. packages (idempotent) --------------------------------------------------------------------------------------
PKGS=(ceph-mon ceph-osd ceph-common radosgw uuid-runtime curl)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if (( ${#missing[@]} )); then
  (( EUID == 0 )) || die "missing packages (${missing[*]}); run once as root or: sudo apt-get install ${missing[*]}"
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt_log=$(mktemp)
  if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$apt_log" 2>&1; then
    tail -n 20 "$apt_log" >&2; die "apt-get install failed"
  fi
  rm -f "$apt_log"
  log "packages installed"
fi

# ---- 2. directory + ports ------------------------------------------------------------------------------------------
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd -P)
CONF=$DIR/ceph.conf
for f in "$DIR"/run/*.pid; do
  [[ -e $f ]] || continue
  pid=$(cat "$f" 2>/dev/null || true)
  if [[ -n $pid ]] && grep -qaF -- "$CONF" "/proc/$pid/cmdline" 2>/dev/null; then
    die "cluster in $DIR still running (pid $pid from $f); run stop-s3.sh $DIR first"
  fi
done
port_busy "$PORT" && die "127.0.0.1:$PORT is already in use"
if [[ -n ${S3_MON_PORT:-} ]]; then
  MON_PORT=$S3_MON_PORT; port_busy "$MON_PORT" && die "mon port $MON_PORT in use"
else
  MON_PORT=
  for ((p = PORT + 1; p <= PORT + 50 && p < 65536; p++)); do
    (( p >= MSGR_MIN && p <= MSGR_MAX )) && continue
    port_busy "$p" || { MON_PORT=$p; break; }
  done
  [[ -n $MON_PORT ]] || die "no free port for the monitor near $PORT"
fi

# fresh state every time (only paths this script owns)
rm -rf "$DIR/mon" "$DIR/osd" "$DIR/run" "$DIR/log" "$DIR/rgw" "$DIR/monmap" "$CONF" "$DIR/keyring" "$DIR/s3.env"
mkdir -p "$DIR/mon" "$DIR/osd/0" "$DIR/run" "$DIR/log" "$DIR/rgw"
: > "$DIR/keyring"
FSID=$(uuidgen)

cat > "$CONF" <<EOF
[global]
fsid = $FSID
mon host = [v2:127.0.0.1:$MON_PORT]
public network = 127.0.0.0/8
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind msgr1 = false
ms bind port min = $MSGR_MIN
ms bind port max = $MSGR_MAX
# no cephx at all; radosgw defaults to ms_mon_client_mode=secure + cephx, which cannot work with auth=none
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc
mon warn on insecure global id reclaim allowed = false
keyring = $DIR/keyring
run dir = $DIR/run
pid file = $DIR/run/\$name.pid
admin socket = $DIR/run/\$name.asok
log file = $DIR/log/\$name.log
log to stderr = false
err to stderr = false
client mount timeout = 30
# one OSD, size-1 pools, few PGs (rgw creates ~7 pools; 32 PGs each would hit mon_max_pg_per_osd)
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
osd crush chooseleaf type = 0
mon data avail warn = 1
mon data avail crit = 0

[mon]
mon data = $DIR/mon/\$id
# default 1 s per osdmap change; rgw's startup makes ~15 of them (pool create/app enable), so this saves ~10 s
paxos propose interval = 0.05

[osd]
osd data = $DIR/osd/\$id
osd objectstore = $BACKEND
memstore device bytes = $(( STORE_GB * 1024 * 1024 * 1024 ))
bluestore block path = $DIR/osd/\$id/block.img
bluestore block create = true
bluestore block size = $(( STORE_GB * 1024 * 1024 * 1024 ))
bluestore block db create = false
bluestore block wal create = false
osd memory target = 939524096
bluestore cache autotune = false
bluestore cache size = 134217728

[client.rgw.s3]
rgw frontends = beast endpoint=127.0.0.1:$PORT
rgw data = $DIR/rgw
rgw init timeout = 90
rgw thread pool size = 64
EOF

C=(-c "$CONF")

# if anything below fails, stop the daemons this run already started (by their pid files, rgw -> osd -> mon)
cleanup_on_failure() {
  local rc=$? f pid
  (( rc == 0 )) && return
  for f in "$DIR/run/client.rgw.s3.pid" "$DIR/run/osd.0.pid" "$DIR/run/mon.a.pid"; do
    pid=$(cat "$f" 2>/dev/null) || pid=
    # radosgw forks before its child writes the pid file: on a busy machine a failure can come
    # first, so a radosgw of this cluster is also found by its command line.
    [[ -z $pid && $f == *rgw* ]] && pid=$(pid_by_cmdline radosgw)
    [[ -n $pid ]] || continue
    if [[ $pid =~ ^[0-9]+$ ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$CONF"; then
      kill -TERM "$pid" 2>/dev/null && echo "start-s3: stopped pid $pid ($(basename "$f" .pid)) after failure" >&2
      for _ in $(seq 100); do tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$CONF" || break; sleep 0.1; done
    fi
  done
}
pid_by_cmdline() { # process name -> the pid of that process started with this cluster's config, if any
  local p
  for p in $(pgrep -x "$1" 2>/dev/null); do
    tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qF -- "$CONF" && { echo "$p"; return; }
  done
}
trap cleanup_on_failure EXIT
wait_for() { # seconds description command...   (command exit 0 = ready, 2 = fatal, other = not yet)
  local t=$1 what=$2 rc; shift 2
  local deadline=$(( $(date +%s) + t ))
  while :; do
    rc=0; "$@" >/dev/null 2>&1 || rc=$?
    (( rc == 0 )) && return 0
    (( rc == 2 )) && die "$what: process died (logs: $DIR/log)"
    (( $(date +%s) < deadline )) || die "timed out after ${t}s waiting for $what (logs: $DIR/log)"
    sleep 0.2
  done
}

# ---- 3. monitor ----------------------------------------------------------------------------------------------------
monmaptool --create --fsid "$FSID" --addv a "[v2:127.0.0.1:$MON_PORT]" "$DIR/monmap" >/dev/null
ceph-mon "${C[@]}" --mkfs -i a --monmap "$DIR/monmap" </dev/null >"$DIR/log/mkfs-mon.out" 2>&1 || die "mon mkfs failed"
ceph-mon "${C[@]}" -i a </dev/null >"$DIR/log/start-mon.out" 2>&1 || die "ceph-mon failed to start (see $DIR/log)"
wait_for 30 "monitor quorum" timeout 10 ceph "${C[@]}" --connect-timeout 5 mon stat
log "mon up on 127.0.0.1:$MON_PORT (pid $(cat "$DIR/run/mon.a.pid"))"

# ---- 4. OSD --------------------------------------------------------------------------------------------------------
OSD_UUID=$(uuidgen)
OSD_ID=$(timeout 30 ceph "${C[@]}" osd new "$OSD_UUID")
[[ $OSD_ID == 0 ]] || die "unexpected osd id '$OSD_ID'"
ceph-osd "${C[@]}" -i 0 --mkfs --osd-uuid "$OSD_UUID" </dev/null >"$DIR/log/mkfs-osd.out" 2>&1 || die "osd mkfs failed (see $DIR/log)"
ceph-osd "${C[@]}" -i 0 </dev/null >"$DIR/log/start-osd.out" 2>&1 || die "ceph-osd failed to start (see $DIR/log)"
osd_up() { timeout 10 ceph "${C[@]}" osd dump -f json | grep -q '"up":1'; }
wait_for 60 "osd.0 up" osd_up
log "osd.0 ($BACKEND) up (pid $(cat "$DIR/run/osd.0.pid"))"

# ---- 5. radosgw ----------------------------------------------------------------------------------------------------
# radosgw forks into the background once it has fetched its config from the mon
timeout 60 radosgw "${C[@]}" -n client.rgw.s3 </dev/null >"$DIR/log/start-rgw.out" 2>&1 || die "radosgw failed to start (see $DIR/log)"
# ... and its child writes the pid file a moment later (seconds, on a loaded machine: seen in CI).
wait_for 30 "radosgw's pid file" test -s "$DIR/run/client.rgw.s3.pid"
RGW_PID=$(cat "$DIR/run/client.rgw.s3.pid")
s3_ready() {
  kill -0 "$RGW_PID" 2>/dev/null || return 2
  [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$PORT/") == 200 ]]
}
wait_for "$READY_TIMEOUT" "radosgw on 127.0.0.1:$PORT" s3_ready
log "radosgw answering on 127.0.0.1:$PORT (pid $RGW_PID)"

# ---- 6. S3 user with fixed keys ------------------------------------------------------------------------------------
timeout 60 radosgw-admin "${C[@]}" user create --uid=audit --display-name="audit test user" \
  --access-key="$ACCESS_KEY" --secret-key="$SECRET_KEY" >"$DIR/log/user-create.out" 2>&1 \
  || die "radosgw-admin user create failed (see $DIR/log/user-create.out)"
log "user 'audit' created; ready"

cat > "$DIR/s3.env" <<EOF
S3_ENDPOINT=http://127.0.0.1:$PORT
S3_REGION=us-east-1
S3_ACCESS_KEY=$ACCESS_KEY
S3_SECRET_KEY=$SECRET_KEY
EOF
cat "$DIR/s3.env"
trap - EXIT

}

stop() {
set -uo pipefail


DIR=${1:?usage: s3.sh stop DIR [--purge]}
[[ -d $DIR ]] || { echo "stop-s3: $DIR does not exist" >&2; exit 0; }
DIR=$(cd "$DIR" && pwd -P)
CONF=$DIR/ceph.conf
rc=0

ours() { [[ -r /proc/$1/cmdline ]] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -qF -- "$CONF"; }

stop_one() { # pidfile [process name, looked up by this cluster's config when the pid file is missing]
  local f=$1 pid i p
  if [[ ! -f $f ]]; then
    # radosgw writes its pid file a moment after it forks: a start that failed in between left none.
    [[ -n ${2:-} ]] || return 0
    for p in $(pgrep -x "$2" 2>/dev/null); do ours "$p" && { echo "$p" >"$f"; break; }; done
    [[ -f $f ]] || return 0
  fi
  pid=$(cat "$f" 2>/dev/null)
  if [[ ! $pid =~ ^[0-9]+$ ]] || ! ours "$pid"; then
    echo "stop-s3: $(basename "$f"): pid '${pid}' not running (or not ours); skipping" >&2
    rm -f "$f"; return 0
  fi
  kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < 100; i++)); do        # up to 10 s for a clean shutdown
    ours "$pid" || break
    sleep 0.1
  done
  if ours "$pid"; then
    echo "stop-s3: pid $pid ($(basename "$f" .pid)) ignored SIGTERM; sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null
    for ((i = 0; i < 50; i++)); do ours "$pid" || break; sleep 0.1; done
    ours "$pid" && { echo "stop-s3: pid $pid still alive" >&2; rc=1; }
  fi
  echo "stop-s3: stopped $(basename "$f" .pid) (pid $pid)" >&2
  rm -f "$f"
}

# gateway first, then OSD, then monitor
stop_one "$DIR/run/client.rgw.s3.pid" radosgw
stop_one "$DIR/run/osd.0.pid"
stop_one "$DIR/run/mon.a.pid"

if [[ ${2:-} == --purge ]] && (( rc == 0 )); then
  rm -rf "$DIR/mon" "$DIR/osd" "$DIR/run" "$DIR/log" "$DIR/rgw" "$DIR/monmap" "$CONF" "$DIR/keyring" "$DIR/s3.env"
  rmdir "$DIR" 2>/dev/null || true
fi
exit $rc

}

free_port() {
  local p
  for p in $(seq 18080 18180); do
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return 0; }
  done
  echo "s3.sh: no free port in 18080-18180" >&2; exit 1
}

cmd=${1:-}; shift || true
case "$cmd" in
  start) [ -n "${2:-}" ] || set -- "${1:?usage: s3.sh start DIR [PORT]}" "$(free_port)"; start "$@" ;;
  stop) stop "$@" ;;
  *) echo "usage: s3.sh start DIR [PORT] | s3.sh stop DIR [--purge]" >&2; exit 2 ;;
esac
