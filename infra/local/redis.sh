# shellcheck shell=bash
# Redis from Debian's redis-server package, our own instance on 127.0.0.1.
# Sourced by services.sh.

REDIS_DIR="$PIR_LOCAL_DIR/redis"
REDIS_PIDFILE="$REDIS_DIR/redis.pid"
REDIS_LOG="$REDIS_DIR/redis.log"
REDIS_PATTERN="redis-server 127.0.0.1:$PIR_REDIS_PORT"

redis_installed() { command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; }

redis_install() {
  if redis_installed; then
    pir_log "redis: installed ($(redis-server --version | sed -n 's/.*\(v=[^ ]*\).*/\1/p'))"
    return 0
  fi
  pir_apt_install redis-server redis-tools
  # Debian's postinst may try to start the packaged instance on 6379 (it does not
  # where policy-rc.d forbids it, as on our machines). Ours must own that port.
  if [[ -x /etc/init.d/redis-server ]] && [[ -s /run/redis/redis-server.pid ]] &&
    kill -0 "$(cat /run/redis/redis-server.pid)" 2>/dev/null; then
    pir_log "redis: stopping the distro's redis-server instance started by apt"
    /etc/init.d/redis-server stop >/dev/null 2>&1 || kill "$(cat /run/redis/redis-server.pid)" || true
  fi
  redis_installed || pir_die "redis: redis-server/redis-cli not found after install"
  pir_log "redis: installed ($(redis-server --version | sed -n 's/.*\(v=[^ ]*\).*/\1/p'))"
}

redis_healthy() {
  [[ "$(redis-cli -h 127.0.0.1 -p "$PIR_REDIS_PORT" ping 2>/dev/null)" == PONG ]]
}

redis_start() {
  redis_installed || redis_install
  pir_lock redis
  mkdir -p "$REDIS_DIR/data"
  local pid
  if pid="$(pir_pid_alive "$REDIS_PIDFILE" "$REDIS_PATTERN")"; then
    if pir_wait redis "$PIR_START_TIMEOUT" "$REDIS_LOG" "$REDIS_PIDFILE" "$REDIS_PATTERN" redis_healthy; then
      pir_log "redis: already running (pid $pid) on 127.0.0.1:$PIR_REDIS_PORT, log: $REDIS_LOG"
      pir_unlock
      return 0
    fi
    pir_die "redis: pid $pid is running but unhealthy; run: $0 stop redis"
  fi
  if pir_port_open "$PIR_REDIS_PORT"; then
    pir_die "redis: port 127.0.0.1:$PIR_REDIS_PORT is already in use by another process (not ours; see: ss -ltnp 'sport = :$PIR_REDIS_PORT'). Stop it or set PIR_REDIS_PORT."
  fi
  pir_log "redis: starting on 127.0.0.1:$PIR_REDIS_PORT"
  # No config file: everything on the command line. No persistence unless
  # PIR_REDIS_APPENDONLY=yes (the restart tests' private instance: a production
  # Redis under BullMQ needs it), and noeviction because BullMQ requires it.
  pir_spawn "$REDIS_PIDFILE" "$REDIS_LOG" redis-server \
    --bind 127.0.0.1 --port "$PIR_REDIS_PORT" --protected-mode yes \
    --daemonize no --supervised no --logfile '' \
    --dir "$REDIS_DIR/data" --save '' --appendonly "${PIR_REDIS_APPENDONLY:-no}" \
    --maxmemory-policy noeviction --databases 16
  if ! pir_wait redis "$PIR_START_TIMEOUT" "$REDIS_LOG" "$REDIS_PIDFILE" "$REDIS_PATTERN" redis_healthy; then
    pir_stop_pid redis "$REDIS_PIDFILE" "$REDIS_PATTERN" 10
    pir_die "redis: failed to start (full log: $REDIS_LOG)"
  fi
  pir_log "redis: running (pid $(cat "$REDIS_PIDFILE")) on 127.0.0.1:$PIR_REDIS_PORT, log: $REDIS_LOG"
  pir_unlock
}

redis_stop() {
  pir_lock redis
  pir_stop_pid redis "$REDIS_PIDFILE" "$REDIS_PATTERN" 10
  pir_unlock
}

redis_status() {
  local pid
  if pid="$(pir_pid_alive "$REDIS_PIDFILE" "$REDIS_PATTERN")"; then
    if redis_healthy; then
      echo "redis     running  healthy    pid=$pid  redis://127.0.0.1:$PIR_REDIS_PORT  log=$REDIS_LOG"
      return 0
    fi
    echo "redis     running  UNHEALTHY  pid=$pid  redis://127.0.0.1:$PIR_REDIS_PORT  log=$REDIS_LOG"
    return 1
  fi
  echo "redis     stopped                       redis://127.0.0.1:$PIR_REDIS_PORT  log=$REDIS_LOG"
  return 1
}

redis_clean() {
  redis_stop
  rm -rf "$REDIS_DIR"
  pir_log "redis: removed $REDIS_DIR"
}
