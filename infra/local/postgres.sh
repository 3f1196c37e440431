# shellcheck shell=bash
# PostgreSQL from Debian (postgresql-15, bookworm's), our own cluster under $PIR_LOCAL_DIR on a
# non-default port, as the storage of FerretDB's PostgreSQL backend (ferretdb.sh,
# PIR_FERRETDB_BACKEND=postgresql). Sourced by services.sh.
#
# PostgreSQL refuses to run as root, so the cluster belongs to Debian's `postgres` user; the
# postmaster is exec'd through setpriv (no extra process: the pid file holds the postmaster).
# Trust authentication on 127.0.0.1 only: a throwaway test cluster.

POSTGRES_DIR="$PIR_LOCAL_DIR/postgres"
POSTGRES_DATA="$POSTGRES_DIR/data"
POSTGRES_PIDFILE="$POSTGRES_DIR/postgres.pid"
POSTGRES_LOG="$POSTGRES_DIR/postgres.log"
POSTGRES_BIN="/usr/lib/postgresql/$PIR_POSTGRES_MAJOR/bin"
POSTGRES_PATTERN="-D $POSTGRES_DATA"
POSTGRES_USER=postgres
# The database FerretDB keeps its collections in.
POSTGRES_FERRETDB_DB=ferretdb

postgres_installed() { [[ -x "$POSTGRES_BIN/postgres" && -x "$POSTGRES_BIN/initdb" && -x "$POSTGRES_BIN/pg_isready" ]]; }

postgres_install() {
  if postgres_installed; then
    pir_log "postgres: installed ($("$POSTGRES_BIN/postgres" --version))"
    return 0
  fi
  # postgresql-NN only: the `postgresql` metapackage's postinst creates and starts a system
  # cluster on 5432, which we neither need nor want.
  pir_apt_install "postgresql-$PIR_POSTGRES_MAJOR"
  # Where policy-rc.d allows it, Debian starts its own cluster: stop it (ours is separate).
  if command -v pg_lsclusters >/dev/null 2>&1; then
    pg_lsclusters -h 2>/dev/null | awk '$4 == "online" {print $1, $2}' | while read -r v c; do
      pir_log "postgres: stopping the distro's cluster $v/$c started by apt"
      pg_ctlcluster "$v" "$c" stop >/dev/null 2>&1 || true
    done
  fi
  postgres_installed || pir_die "postgres: $POSTGRES_BIN/postgres not found after installing postgresql-$PIR_POSTGRES_MAJOR"
  pir_log "postgres: installed ($("$POSTGRES_BIN/postgres" --version))"
}

postgres_as_owner() { setpriv --reuid="$POSTGRES_USER" --regid="$POSTGRES_USER" --init-groups -- "$@"; }

postgres_healthy() {
  "$POSTGRES_BIN/pg_isready" -q -h 127.0.0.1 -p "$PIR_POSTGRES_PORT" -d "$POSTGRES_FERRETDB_DB" -U "$POSTGRES_USER"
}

# The URL FerretDB's --postgresql-url takes.
postgres_url() { echo "postgres://$POSTGRES_USER@127.0.0.1:$PIR_POSTGRES_PORT/$POSTGRES_FERRETDB_DB"; }

# Indexes FerretDB's pushed-down equality filters can use, and custom plans (see the file:
# without them every lookup, even by _id, scans its collection). Idempotent; FerretDB's
# connections opened before it keep generic plans until FerretDB restarts.
postgres_tune() {
  if ! psql -h 127.0.0.1 -p "$PIR_POSTGRES_PORT" -U "$POSTGRES_USER" -d "$POSTGRES_FERRETDB_DB" -v ON_ERROR_STOP=1 -q \
    -f "$PIR_INFRA_DIR/postgres-ferretdb.sql" >>"$POSTGRES_LOG" 2>&1; then
    pir_die "postgres: applying $PIR_INFRA_DIR/postgres-ferretdb.sql failed (log: $POSTGRES_LOG)"
  fi
}

postgres_start() {
  postgres_installed || postgres_install
  pir_lock postgres
  local pid
  if pid="$(pir_pid_alive "$POSTGRES_PIDFILE" "$POSTGRES_PATTERN")"; then
    if pir_wait postgres "$PIR_START_TIMEOUT" "$POSTGRES_LOG" "$POSTGRES_PIDFILE" "$POSTGRES_PATTERN" postgres_healthy; then
      pir_log "postgres: already running (pid $pid) on 127.0.0.1:$PIR_POSTGRES_PORT, log: $POSTGRES_LOG"
      postgres_tune
      pir_unlock
      return 0
    fi
    pir_die "postgres: pid $pid is running but unhealthy; run: $0 stop postgres"
  fi
  if pir_port_open "$PIR_POSTGRES_PORT"; then
    pir_die "postgres: port 127.0.0.1:$PIR_POSTGRES_PORT is already in use by another process (not ours; see: ss -ltnp 'sport = :$PIR_POSTGRES_PORT'). Stop it or set PIR_POSTGRES_PORT."
  fi
  mkdir -p "$POSTGRES_DIR"
  chown "$POSTGRES_USER:" "$POSTGRES_DIR"
  if [[ ! -s "$POSTGRES_DATA/PG_VERSION" ]]; then
    rm -rf "$POSTGRES_DATA"
    pir_log "postgres: initdb $POSTGRES_DATA"
    if ! postgres_as_owner "$POSTGRES_BIN/initdb" -D "$POSTGRES_DATA" -U "$POSTGRES_USER" --auth=trust \
      --encoding=UTF8 --locale=C.UTF-8 >>"$POSTGRES_LOG" 2>&1; then
      tail -n 20 "$POSTGRES_LOG" >&2
      pir_die "postgres: initdb failed (log: $POSTGRES_LOG)"
    fi
  fi
  touch "$POSTGRES_LOG"
  chown "$POSTGRES_USER:" "$POSTGRES_LOG"
  pir_log "postgres: starting $("$POSTGRES_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PIR_POSTGRES_PORT"
  # A test cluster: loopback only, socket in our own dir, no fsync wait per commit
  # (synchronous_commit=off loses at most the last few hundred ms on an OS crash, never
  # consistency), small shared memory so it sits beside the other services.
  pir_spawn "$POSTGRES_PIDFILE" "$POSTGRES_LOG" setpriv --reuid="$POSTGRES_USER" --regid="$POSTGRES_USER" --init-groups -- \
    "$POSTGRES_BIN/postgres" -D "$POSTGRES_DATA" -p "$PIR_POSTGRES_PORT" \
    -c listen_addresses=127.0.0.1 -c unix_socket_directories="$POSTGRES_DIR" \
    -c max_connections=200 -c shared_buffers=128MB -c synchronous_commit=off \
    -c logging_collector=off -c log_min_messages=warning
  # The database FerretDB uses (pg_isready answers before it exists, so wait for the server first).
  local i
  for ((i = 0; i < PIR_START_TIMEOUT * 2; i++)); do
    "$POSTGRES_BIN/pg_isready" -q -h 127.0.0.1 -p "$PIR_POSTGRES_PORT" && break
    pir_pid_alive "$POSTGRES_PIDFILE" "$POSTGRES_PATTERN" >/dev/null || break
    sleep 0.5
  done
  if ! psql -h 127.0.0.1 -p "$PIR_POSTGRES_PORT" -U "$POSTGRES_USER" -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = '$POSTGRES_FERRETDB_DB'" 2>>"$POSTGRES_LOG" | grep -q 1; then
    psql -h 127.0.0.1 -p "$PIR_POSTGRES_PORT" -U "$POSTGRES_USER" -d postgres -qc "CREATE DATABASE $POSTGRES_FERRETDB_DB" >>"$POSTGRES_LOG" 2>&1 || true
  fi
  if ! pir_wait postgres "$PIR_START_TIMEOUT" "$POSTGRES_LOG" "$POSTGRES_PIDFILE" "$POSTGRES_PATTERN" postgres_healthy; then
    pir_stop_pid postgres "$POSTGRES_PIDFILE" "$POSTGRES_PATTERN" 20
    pir_die "postgres: failed to start (full log: $POSTGRES_LOG)"
  fi
  postgres_tune
  pir_log "postgres: running (pid $(cat "$POSTGRES_PIDFILE")) on 127.0.0.1:$PIR_POSTGRES_PORT, log: $POSTGRES_LOG"
  pir_unlock
}

postgres_stop() {
  pir_lock postgres
  # SIGTERM is PostgreSQL's "smart" shutdown (waits for clients); FerretDB is stopped first.
  pir_stop_pid postgres "$POSTGRES_PIDFILE" "$POSTGRES_PATTERN" 30
  pir_unlock
}

postgres_status() {
  local pid
  if pid="$(pir_pid_alive "$POSTGRES_PIDFILE" "$POSTGRES_PATTERN")"; then
    if postgres_healthy >/dev/null 2>&1; then
      echo "postgres  running  healthy    pid=$pid  $(postgres_url)  log=$POSTGRES_LOG"
      return 0
    fi
    echo "postgres  running  UNHEALTHY  pid=$pid  $(postgres_url)  log=$POSTGRES_LOG"
    return 1
  fi
  echo "postgres  stopped                       $(postgres_url)  log=$POSTGRES_LOG"
  return 1
}

postgres_clean() {
  postgres_stop
  rm -rf "$POSTGRES_DIR"
  pir_log "postgres: removed $POSTGRES_DIR"
}
