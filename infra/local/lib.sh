# shellcheck shell=bash
# Shared helpers for infra/local/*.sh. Sourced, not executed.
#
# Everything is configurable through environment variables; the defaults are
# what the tests expect (see README.md).

PIR_INFRA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PIR_CACHE_DIR="${PIR_CACHE_DIR:-$HOME/.cache/pir}"
export PIR_LOCAL_DIR="${PIR_LOCAL_DIR:-/tmp/pir-local}"

# Ports (all bound to 127.0.0.1 only).
PIR_REDIS_PORT="${PIR_REDIS_PORT:-6379}"
PIR_KAFKA_PORT="${PIR_KAFKA_PORT:-9092}"
PIR_KAFKA_CONTROLLER_PORT="${PIR_KAFKA_CONTROLLER_PORT:-9093}"
PIR_FERRETDB_PORT="${PIR_FERRETDB_PORT:-27017}"
PIR_KEYSTONE_PORT="${PIR_KEYSTONE_PORT:-15000}"
# SeaweedFS (service `s3`): each port's gRPC twin is port + 10000 (19433..19436).
PIR_SEAWEEDFS_MASTER_PORT="${PIR_SEAWEEDFS_MASTER_PORT:-9433}"
PIR_SEAWEEDFS_VOLUME_PORT="${PIR_SEAWEEDFS_VOLUME_PORT:-9434}"
PIR_SEAWEEDFS_FILER_PORT="${PIR_SEAWEEDFS_FILER_PORT:-9435}"
PIR_S3_PORT="${PIR_S3_PORT:-9436}"
PIR_S3_BUCKET_NAME="${PIR_S3_BUCKET_NAME:-pir}"
# SeaweedFS frees a deleted object's bytes only when it compacts ("vacuums") the volume holding
# them: its master does every PIR_SEAWEEDFS_VACUUM_SECONDS (SeaweedFS: 840) for volumes with at least
# this share of deleted bytes (SeaweedFS: 0.3), and `start` once, for what earlier runs left.
PIR_SEAWEEDFS_GARBAGE_THRESHOLD="${PIR_SEAWEEDFS_GARBAGE_THRESHOLD:-0.1}"
PIR_SEAWEEDFS_VACUUM_SECONDS="${PIR_SEAWEEDFS_VACUUM_SECONDS:-300}"
# Local-only credentials of the test gateway (loopback; not a secret).
PIR_S3_LOCAL_ACCESS_KEY="${PIR_S3_LOCAL_ACCESS_KEY:-pir-local-access}"
PIR_S3_LOCAL_SECRET_KEY="${PIR_S3_LOCAL_SECRET_KEY:-pir-local-secret-key}"
# The local Keystone's bootstrap admin password and the URL its catalog gives for the image service.
PIR_KEYSTONE_ADMIN_PASSWORD="${PIR_KEYSTONE_ADMIN_PASSWORD:-admin-pass}"
PIR_KEYSTONE_IMAGE_URL="${PIR_KEYSTONE_IMAGE_URL:-http://127.0.0.1:9292}"
# FerretDB's debug/metrics HTTP listener: "-" = disabled; e.g. 127.0.0.1:8088 to enable.
PIR_FERRETDB_DEBUG_ADDR="${PIR_FERRETDB_DEBUG_ADDR:--}"
PIR_FERRETDB_LOG_LEVEL="${PIR_FERRETDB_LOG_LEVEL:-WARN}"
# Go's GC target for FerretDB (GOGC): 400 spends ~12% less of its CPU per command than Go's
# default 100 for ~110 MB of memory under the benchmark's load (docs/benchmarks.md, 2026-12-05 20:07).
PIR_FERRETDB_GOGC="${PIR_FERRETDB_GOGC:-400}"
# FerretDB's backend: sqlite or postgresql (Debian's PostgreSQL, on its own port). README.md: why the default.
PIR_FERRETDB_BACKEND="${PIR_FERRETDB_BACKEND:-sqlite}"
PIR_POSTGRES_PORT="${PIR_POSTGRES_PORT:-54329}"

# Pinned versions.
PIR_KAFKA_VERSION="${PIR_KAFKA_VERSION:-3.9.2}"
PIR_SCALA_BINARY="${PIR_SCALA_BINARY:-2.13}"
PIR_FERRETDB_VERSION="${PIR_FERRETDB_VERSION:-v1.24.2}"
# Debian bookworm's PostgreSQL (the package postgresql-$PIR_POSTGRES_MAJOR).
PIR_POSTGRES_MAJOR="${PIR_POSTGRES_MAJOR:-15}"
PIR_SEAWEEDFS_VERSION="${PIR_SEAWEEDFS_VERSION:-v0.0.0-20261109003541-7506e5f91cd6}"

# Timeouts (seconds) for the health waits.
PIR_START_TIMEOUT="${PIR_START_TIMEOUT:-120}"

PIR_GO="${PIR_GO:-}"
if [[ -z "$PIR_GO" ]]; then
  if command -v go >/dev/null 2>&1; then PIR_GO="$(command -v go)"; else PIR_GO=/usr/local/go/bin/go; fi
fi

pir_log() { printf '[pir-local] %s\n' "$*" >&2; }
pir_die() { printf '[pir-local] ERROR: %s\n' "$*" >&2; exit 1; }

pir_now() { date +%s; }

# pir_python: the probe helper needs only the python3 standard library.
pir_python() {
  local py
  for py in /usr/bin/python3 python3; do
    if command -v "$py" >/dev/null 2>&1; then "$py" "$PIR_INFRA_DIR/probe.py" "$@"; return; fi
  done
  pir_die "python3 not found (needed for health probes); apt-get install python3-minimal"
}

# pir_port_open PORT -> 0 if something accepts TCP connections on 127.0.0.1:PORT.
pir_port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") >/dev/null 2>&1
}

# pir_pid_alive PIDFILE PATTERN -> prints pid and returns 0 if the process in
# PIDFILE is alive and its command line contains PATTERN (guards against pid reuse).
pir_pid_alive() {
  local pidfile="$1" pattern="$2" pid
  [[ -s "$pidfile" ]] || return 1
  pid="$(tr -dc '0-9' <"$pidfile")"
  [[ -n "$pid" ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  # The pid file is written just before the service is exec'd, and while the kernel sets up the
  # new program its command line reads as empty: that is a process starting, not a dead one, so
  # read again for up to 5 s before judging (a live FerretDB was once judged dead at its start
  # and left orphaned; this, or the tr|grep -q pipeline under pipefail used before, did it).
  local cmdline="" i
  for ((i = 0; i < 50; i++)); do
    [[ -r "/proc/$pid/cmdline" ]] || return 1
    # A zombie's command line is empty too, and it is dead.
    [[ "$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -c1)" != Z ]] || return 1
    cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline")"
    [[ -z "$cmdline" ]] || break
    sleep 0.1
  done
  [[ "$cmdline" == *"$pattern"* ]] || return 1
  echo "$pid"
}

# pir_stop_pid NAME PIDFILE PATTERN [GRACE_SECONDS]
pir_stop_pid() {
  local name="$1" pidfile="$2" pattern="$3" grace="${4:-20}" pid i
  if ! pid="$(pir_pid_alive "$pidfile" "$pattern")"; then
    rm -f "$pidfile"
    pir_log "$name: not running"
    return 0
  fi
  pir_log "$name: stopping pid $pid"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    pir_log "$name: still alive after ${grace}s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
  fi
  rm -f "$pidfile"
  pir_log "$name: stopped"
}

# pir_spawn PIDFILE LOGFILE CMD... : start CMD in its own session, in the
# background, detached from our stdin/stdout, and record its pid.
pir_spawn() {
  local pidfile="$1" logfile="$2"
  shift 2
  rm -f "$pidfile"
  printf '\n===== %s starting: %s\n' "$(date -u +%FT%TZ)" "$*" >>"$logfile"
  # The child writes its own pid and then execs CMD, so the pid file is right
  # whether or not setsid had to fork.
  # fds 8/9 (our flock locks) must not leak into the long-running service.
  # shellcheck disable=SC2016 # expanded by the inner bash
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" </dev/null >>"$logfile" 2>&1 8>&- 9>&- &
  local i
  for ((i = 0; i < 50; i++)); do [[ -s "$pidfile" ]] && break; sleep 0.1; done
}

# pir_wait NAME TIMEOUT LOGFILE PIDFILE PATTERN CHECK_FN...
# Polls CHECK_FN until it succeeds; fails with the log tail if the process
# dies or the timeout passes.
pir_wait() {
  local name="$1" timeout="$2" logfile="$3" pidfile="$4" pattern="$5"
  shift 5
  local start; start="$(pir_now)"
  while true; do
    if "$@" >/dev/null 2>&1; then
      pir_log "$name: healthy after $(($(pir_now) - start))s"
      return 0
    fi
    if ! pir_pid_alive "$pidfile" "$pattern" >/dev/null; then
      pir_log "$name: process exited before becoming healthy. Last log lines ($logfile):"
      tail -n 40 "$logfile" >&2 || true
      return 1
    fi
    if (($(pir_now) - start >= timeout)); then
      pir_log "$name: not healthy after ${timeout}s. Last log lines ($logfile):"
      tail -n 40 "$logfile" >&2 || true
      return 1
    fi
    sleep 0.5
  done
}

# pir_lock NAME: serialize concurrent invocations for one service (fd 9).
pir_lock() {
  mkdir -p "$PIR_LOCAL_DIR"
  exec 9>"$PIR_LOCAL_DIR/.$1.lock"
  if ! flock -w 600 9; then pir_die "could not lock $PIR_LOCAL_DIR/.$1.lock"; fi
}
pir_unlock() { flock -u 9 2>/dev/null || true; exec 9>&-; }

# pir_cache_lock NAME: serialize concurrent installs into the cache (fd 8).
pir_cache_lock() {
  mkdir -p "$PIR_CACHE_DIR"
  exec 8>"$PIR_CACHE_DIR/.$1.lock"
  if ! flock -w 1800 8; then pir_die "could not lock $PIR_CACHE_DIR/.$1.lock"; fi
}
pir_cache_unlock() { flock -u 8 2>/dev/null || true; exec 8>&-; }

# Apt helpers ---------------------------------------------------------------

pir_dpkg_installed() {
  [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" == installed ]]
}

_PIR_APT_UPDATED=0
# pir_apt_install PKG... : installs the packages that are not installed yet.
pir_apt_install() {
  local missing=() p sudo=()
  for p in "$@"; do pir_dpkg_installed "$p" || missing+=("$p"); done
  ((${#missing[@]} == 0)) && return 0
  if ((EUID != 0)); then
    command -v sudo >/dev/null 2>&1 || pir_die "need root (or sudo) to apt-get install ${missing[*]}"
    sudo=(sudo -n)
  fi
  local aptopts=(-o DPkg::Lock::Timeout=600 -o Dpkg::Use-Pty=0)
  local aptlog="$PIR_CACHE_DIR/apt.log"
  mkdir -p "$PIR_CACHE_DIR"
  if ((_PIR_APT_UPDATED == 0)); then
    pir_log "apt-get update (log: $aptlog)"
    if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${aptopts[@]}" -q update >"$aptlog" 2>&1; then
      tail -n 20 "$aptlog" >&2
      pir_die "apt-get update failed (log: $aptlog)"
    fi
    _PIR_APT_UPDATED=1
  fi
  pir_log "apt-get install ${missing[*]} (log: $aptlog)"
  if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${aptopts[@]}" -y -q \
    --no-install-recommends install "${missing[@]}" >>"$aptlog" 2>&1; then
    tail -n 30 "$aptlog" >&2
    pir_die "apt-get install ${missing[*]} failed (log: $aptlog)"
  fi
}
