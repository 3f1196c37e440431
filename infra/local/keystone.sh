# shellcheck shell=bash
# OpenStack Keystone from Debian bookworm's packages, our own instance on 127.0.0.1:
# SQLite (WAL), Fernet tokens, one uwsgi process with threads. Seeded over REST with the
# projects, users, roles and catalog PIR's tests use (keystone_seed.py). Sourced by services.sh.
# Recipe and pitfalls: /work/shared/reference/keystone.md (summarised in README.md here).

KEYSTONE_DIR="$PIR_LOCAL_DIR/keystone"
KEYSTONE_PIDFILE="$KEYSTONE_DIR/uwsgi.pid"
KEYSTONE_LOG="$KEYSTONE_DIR/log/uwsgi.log"
KEYSTONE_PATTERN="uwsgi --ini $KEYSTONE_DIR/etc/uwsgi.ini"
KEYSTONE_URL="http://127.0.0.1:$PIR_KEYSTONE_PORT/v3"
# Debian packages (bookworm fixes the upstream versions: Keystone 22.0.2 "Zed", uwsgi 2.0.21,
# openstackclient 6.0.0, glanceclient 4.1.0).
KEYSTONE_PACKAGES=(keystone uwsgi-core uwsgi-plugin-python3 python3-openstackclient python3-glanceclient sqlite3)

keystone_installed() {
  local p
  for p in "${KEYSTONE_PACKAGES[@]}"; do pir_dpkg_installed "$p" || return 1; done
  command -v uwsgi >/dev/null 2>&1 && command -v keystone-manage >/dev/null 2>&1 && command -v openstack >/dev/null 2>&1
}

keystone_install() {
  if keystone_installed; then
    pir_log "keystone: installed ($(dpkg-query -W -f='${Version}' keystone))"
    return 0
  fi
  local sudo=()
  ((EUID == 0)) || sudo=(sudo -n)
  # Keep the maintainer scripts from configuring a database, bootstrapping an admin or
  # registering an endpoint: our instance does all of that under $KEYSTONE_DIR.
  "${sudo[@]}" debconf-set-selections <<'SEL'
keystone keystone/configure_db boolean false
keystone keystone/create-admin-tenant boolean false
keystone keystone/register-endpoint boolean false
SEL
  # The packaged init script would start uwsgi on *:5000 with 8x32 workers: a policy-rc.d that
  # refuses service starts keeps invoke-rc.d from doing it (the machine image ships one).
  local added_policy=no
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee /usr/sbin/policy-rc.d >/dev/null
    "${sudo[@]}" chmod +x /usr/sbin/policy-rc.d
    added_policy=yes
  fi
  pir_apt_install "${KEYSTONE_PACKAGES[@]}"
  [[ "$added_policy" == yes ]] && "${sudo[@]}" rm -f /usr/sbin/policy-rc.d
  keystone_installed || pir_die "keystone: keystone-manage/uwsgi/openstack not found after install"
  pir_log "keystone: installed ($(dpkg-query -W -f='${Version}' keystone))"
}

keystone_healthy() {
  /usr/bin/python3 "$PIR_INFRA_DIR/keystone_seed.py" health "$KEYSTONE_URL"
}

# keystone_configure: config, keys, database and bootstrap in a fresh $KEYSTONE_DIR.
keystone_configure() {
  rm -rf "$KEYSTONE_DIR"
  mkdir -p "$KEYSTONE_DIR"/{etc,log,fernet-keys,credential-keys}
  chmod 700 "$KEYSTONE_DIR"/fernet-keys "$KEYSTONE_DIR"/credential-keys
  cat >"$KEYSTONE_DIR/etc/keystone.conf" <<EOF
[DEFAULT]
log_dir = $KEYSTONE_DIR/log
log_file = keystone.log

[database]
connection = sqlite:///$KEYSTONE_DIR/keystone.db

[token]
provider = fernet
expiration = 3600

[fernet_tokens]
key_repository = $KEYSTONE_DIR/fernet-keys

[fernet_receipts]
key_repository = $KEYSTONE_DIR/fernet-keys

[credential]
key_repository = $KEYSTONE_DIR/credential-keys

[identity]
# bcrypt cost 4 instead of 12: a password check takes ~2 ms instead of ~250 ms (tests only)
password_hash_rounds = 4

[cache]
# without it one validation runs ~770 SQL statements (0.6-1 s instead of ~10 ms)
enabled = true
backend = dogpile.cache.memory
EOF
  cat >"$KEYSTONE_DIR/etc/uwsgi.ini" <<EOF
[uwsgi]
plugins = python3
http-socket = 127.0.0.1:$PIR_KEYSTONE_PORT
# http-socket closes every connection without saying so; without this header python-requests
# reuses a closed socket (RemoteDisconnected)
add-header = Connection: close
wsgi-file = /usr/bin/keystone-wsgi-public
env = OS_KEYSTONE_CONFIG_FILES=$KEYSTONE_DIR/etc/keystone.conf
master = true
# one process: Keystone's memory cache is per process (a second one would serve stale roles
# and revocations) and SQLite has one writer anyway; threads give concurrency
processes = 1
threads = 4
lazy-apps = true
need-app = true
die-on-term = true
buffer-size = 65535
EOF
  local km=(keystone-manage --config-file "$KEYSTONE_DIR/etc/keystone.conf")
  local err="$KEYSTONE_DIR/log/manage.log"
  pir_log "keystone: db_sync, fernet/credential keys, bootstrap (log: $err)"
  # Each keystone-manage run ends with a harmless eventlet traceback on stderr (exit code 0).
  "${km[@]}" db_sync >>"$err" 2>&1 || { tail -n 20 "$err" >&2; return 1; }
  # WAL: a Keystone bug leaves a read transaction open after each token render; in SQLite's
  # rollback-journal mode that makes the next write fail with 'database is locked' (HTTP 500).
  sqlite3 "$KEYSTONE_DIR/keystone.db" 'PRAGMA journal_mode=WAL;' >/dev/null
  "${km[@]}" fernet_setup --keystone-user root --keystone-group root >>"$err" 2>&1 || { tail -n 20 "$err" >&2; return 1; }
  "${km[@]}" credential_setup --keystone-user root --keystone-group root >>"$err" 2>&1 || { tail -n 20 "$err" >&2; return 1; }
  "${km[@]}" bootstrap --bootstrap-password "$PIR_KEYSTONE_ADMIN_PASSWORD" \
    --bootstrap-username admin --bootstrap-project-name admin \
    --bootstrap-role-name admin --bootstrap-service-name keystone \
    --bootstrap-region-id RegionOne \
    --bootstrap-admin-url "$KEYSTONE_URL/" --bootstrap-public-url "$KEYSTONE_URL/" \
    --bootstrap-internal-url "$KEYSTONE_URL/" >>"$err" 2>&1 || { tail -n 20 "$err" >&2; return 1; }
}

keystone_seed() {
  local err="$KEYSTONE_DIR/log/seed.log"
  if ! PIR_KEYSTONE_ADMIN_PASSWORD="$PIR_KEYSTONE_ADMIN_PASSWORD" PIR_KEYSTONE_IMAGE_URL="$PIR_KEYSTONE_IMAGE_URL" \
    /usr/bin/python3 "$PIR_INFRA_DIR/keystone_seed.py" seed "$KEYSTONE_URL" >>"$err" 2>&1; then
    tail -n 20 "$err" >&2
    return 1
  fi
  pir_log "keystone: seeded ($(tail -n 1 "$err"))"
}

keystone_start() {
  keystone_installed || keystone_install
  pir_lock keystone
  local pid
  if pid="$(pir_pid_alive "$KEYSTONE_PIDFILE" "$KEYSTONE_PATTERN")"; then
    if pir_wait keystone "$PIR_START_TIMEOUT" "$KEYSTONE_LOG" "$KEYSTONE_PIDFILE" "$KEYSTONE_PATTERN" keystone_healthy; then
      pir_log "keystone: already running (pid $pid) at $KEYSTONE_URL, log: $KEYSTONE_LOG"
      pir_unlock
      return 0
    fi
    pir_die "keystone: pid $pid is running but unhealthy; run: $0 stop keystone"
  fi
  if pir_port_open "$PIR_KEYSTONE_PORT"; then
    pir_die "keystone: port 127.0.0.1:$PIR_KEYSTONE_PORT is already in use by another process (not ours; see: ss -ltnp 'sport = :$PIR_KEYSTONE_PORT'). Stop it or set PIR_KEYSTONE_PORT."
  fi
  # A completed setup leaves .seeded; anything less (first run, a crash half-way) starts over.
  local fresh=no
  if [[ ! -e "$KEYSTONE_DIR/.seeded" ]]; then
    keystone_configure || pir_die "keystone: setup failed (logs under $KEYSTONE_DIR/log)"
    fresh=yes
  fi
  pir_log "keystone: starting uwsgi on 127.0.0.1:$PIR_KEYSTONE_PORT"
  pir_spawn "$KEYSTONE_PIDFILE" "$KEYSTONE_LOG" uwsgi --ini "$KEYSTONE_DIR/etc/uwsgi.ini"
  if ! pir_wait keystone "$PIR_START_TIMEOUT" "$KEYSTONE_LOG" "$KEYSTONE_PIDFILE" "$KEYSTONE_PATTERN" keystone_healthy; then
    pir_stop_pid keystone "$KEYSTONE_PIDFILE" "$KEYSTONE_PATTERN" 10
    pir_die "keystone: failed to start (full log: $KEYSTONE_LOG)"
  fi
  # One token issued and validated alone before any client: two first requests at once on two
  # threads can deadlock Keystone for good (eventlet 'cannot switch to a different thread').
  if ! PIR_KEYSTONE_ADMIN_PASSWORD="$PIR_KEYSTONE_ADMIN_PASSWORD" /usr/bin/python3 "$PIR_INFRA_DIR/keystone_seed.py" warm "$KEYSTONE_URL" >>"$KEYSTONE_DIR/log/warm.log" 2>&1; then
    pir_stop_pid keystone "$KEYSTONE_PIDFILE" "$KEYSTONE_PATTERN" 10
    pir_die "keystone: the first token request failed (log: $KEYSTONE_DIR/log/warm.log)"
  fi
  if [[ "$fresh" == yes ]]; then
    if ! keystone_seed; then
      pir_stop_pid keystone "$KEYSTONE_PIDFILE" "$KEYSTONE_PATTERN" 10
      pir_die "keystone: seeding failed (log: $KEYSTONE_DIR/log/seed.log)"
    fi
    touch "$KEYSTONE_DIR/.seeded"
  fi
  pir_log "keystone: running (pid $(cat "$KEYSTONE_PIDFILE")) at $KEYSTONE_URL, log: $KEYSTONE_LOG"
  pir_unlock
}

keystone_stop() {
  pir_lock keystone
  # die-on-term: the uwsgi master stops its worker and exits on TERM.
  pir_stop_pid keystone "$KEYSTONE_PIDFILE" "$KEYSTONE_PATTERN" 10
  pir_unlock
}

keystone_status() {
  local pid
  if pid="$(pir_pid_alive "$KEYSTONE_PIDFILE" "$KEYSTONE_PATTERN")"; then
    if keystone_healthy; then
      echo "keystone  running  healthy    pid=$pid  $KEYSTONE_URL  log=$KEYSTONE_LOG"
      return 0
    fi
    echo "keystone  running  UNHEALTHY  pid=$pid  $KEYSTONE_URL  log=$KEYSTONE_LOG"
    return 1
  fi
  echo "keystone  stopped                       $KEYSTONE_URL  log=$KEYSTONE_LOG"
  return 1
}

keystone_clean() {
  keystone_stop
  rm -rf "$KEYSTONE_DIR"
  pir_log "keystone: removed $KEYSTONE_DIR"
}
