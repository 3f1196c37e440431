# shellcheck shell=bash
# SeaweedFS (Apache-2.0) as the local S3-compatible object store: one `weed server -s3`
# process (master + volume + filer + S3 gateway) on loopback, built from the Go module proxy
# source like FerretDB. Sourced by services.sh; the service is called `s3`.

S3_DIR="$PIR_LOCAL_DIR/seaweedfs"
S3_PIDFILE="$S3_DIR/weed.pid"
S3_LOG="$S3_DIR/weed.log"
S3_DATA="$S3_DIR/data"
S3_CONFIG="$S3_DIR/s3.json"
S3_BIN="$PIR_CACHE_DIR/seaweedfs/$PIR_SEAWEEDFS_VERSION/bin/weed"
# The master port is unique to our command line (guards the pid file against pid reuse).
S3_PATTERN="-master.port=$PIR_SEAWEEDFS_MASTER_PORT"
S3_MODULE="github.com/seaweedfs/seaweedfs"
S3_URL="http://127.0.0.1:$PIR_S3_PORT"

s3_installed() { [[ -x "$S3_BIN" ]]; }

s3_install() {
  if s3_installed; then
    pir_log "s3: seaweedfs $PIR_SEAWEEDFS_VERSION cached at $S3_BIN"
    return 0
  fi
  pir_cache_lock seaweedfs
  if s3_installed; then pir_cache_unlock; return 0; fi
  [[ -x "$PIR_GO" ]] || command -v "$PIR_GO" >/dev/null 2>&1 ||
    { pir_cache_unlock; pir_die "s3: Go toolchain not found (set PIR_GO; expected /usr/local/go/bin/go)"; }

  local t0; t0="$(pir_now)"
  local root="$PIR_CACHE_DIR/seaweedfs/$PIR_SEAWEEDFS_VERSION"
  local src="$root/src" buildlog="$root/build.log" gocache="$root/go"
  mkdir -p "$root"
  : >"$buildlog"
  # Own Go caches under this build's root (not the shared $PIR_CACHE_DIR/go the FerretDB
  # build deletes when it finishes), removed once the binary is in place.
  local goenv=(env GOMODCACHE="$gocache/mod" GOCACHE="$gocache/build"
    GOFLAGS="-modcacherw -buildvcs=false" GOTOOLCHAIN=local CGO_ENABLED=0 GOWORK=off)

  # As for FerretDB: the proxy lists no versions of this module, so `go install m@v` fails its
  # deprecation check; download the exact pseudo-version and build it in place.
  pir_log "s3: downloading $S3_MODULE@$PIR_SEAWEEDFS_VERSION (build log: $buildlog)"
  local json dir
  if ! json="$(cd "$root" && "${goenv[@]}" "$PIR_GO" mod download -json "$S3_MODULE@$PIR_SEAWEEDFS_VERSION" 2>>"$buildlog")"; then
    echo "$json" >>"$buildlog"; tail -n 30 "$buildlog" >&2
    pir_cache_unlock; pir_die "s3: go mod download failed"
  fi
  dir="$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [[ -n "$dir" && -f "$dir/go.mod" ]] || { echo "$json" >&2; pir_cache_unlock; pir_die "s3: module dir not found"; }
  rm -rf "$src"
  cp -r "$dir" "$src"
  chmod -R u+w "$src"
  pir_log "s3: building seaweedfs $PIR_SEAWEEDFS_VERSION with $("$PIR_GO" version | cut -d' ' -f3) (first time takes 10-20 minutes on 2 cores)"
  # nice: the build is long and must not starve the test services other engineers share.
  if ! (cd "$src" && nice -n 10 "${goenv[@]}" "$PIR_GO" build -trimpath -ldflags="-s -w" -o "$S3_BIN.tmp" ./weed >>"$buildlog" 2>&1); then
    tail -n 40 "$buildlog" >&2
    pir_cache_unlock; pir_die "s3: go build failed (log: $buildlog)"
  fi
  mkdir -p "$(dirname "$S3_BIN")"
  mv "$S3_BIN.tmp" "$S3_BIN"
  rm -rf "$src" "$gocache"
  pir_cache_unlock
  pir_log "s3: installed $("$S3_BIN" version 2>&1 | head -1) at $S3_BIN in $(($(pir_now) - t0))s"
}

# Healthy: the gateway answers S3 and the bucket exists (created by s3_start).
s3_answers() { pir_python s3 "$PIR_S3_PORT"; }
s3_healthy() { s3_answers >/dev/null && pir_python bucket "$PIR_SEAWEEDFS_FILER_PORT" "$PIR_S3_BUCKET_NAME"; }

# The bucket, created once through `weed shell` (idempotent: skipped when the filer lists it).
s3_create_bucket() {
  pir_python bucket "$PIR_SEAWEEDFS_FILER_PORT" "$PIR_S3_BUCKET_NAME" >/dev/null 2>&1 && return 0
  local i
  for ((i = 0; i < 30; i++)); do
    echo "s3.bucket.create -name $PIR_S3_BUCKET_NAME" |
      "$S3_BIN" shell -master="127.0.0.1:$PIR_SEAWEEDFS_MASTER_PORT" -filer="127.0.0.1:$PIR_SEAWEEDFS_FILER_PORT" >>"$S3_LOG" 2>&1 || true
    pir_python bucket "$PIR_SEAWEEDFS_FILER_PORT" "$PIR_S3_BUCKET_NAME" >/dev/null 2>&1 && return 0
    sleep 1
  done
  return 1
}

# Compacts what earlier runs deleted (the data dir kept growing between runs: 28 GB, then no
# writable volume). In the background, so start does not wait for the master's raft election
# (~15 s): the master answers once every volume over the threshold is compacted; the log says
# what the data dir was before and after.
s3_vacuum_soon() {
  # shellcheck disable=SC2016 # expanded by the inner bash
  setsid bash -c 'before="$(du -sm "$0" | cut -f1)"
    if python3 "$1" vacuum "$2" "$3" 120; then echo "[pir-local] s3: vacuum after start: data dir ${before} MB -> $(du -sm "$0" | cut -f1) MB"; fi' \
    "$S3_DATA" "$PIR_INFRA_DIR/probe.py" "$PIR_SEAWEEDFS_MASTER_PORT" "$PIR_SEAWEEDFS_GARBAGE_THRESHOLD" \
    </dev/null >>"$S3_LOG" 2>&1 8>&- 9>&- &
}

# The gateway's identities: one admin key pair (PIR's credentials), written before start.
s3_write_config() {
  cat >"$S3_CONFIG" <<EOF
{
  "identities": [
    {
      "name": "pir",
      "credentials": [{ "accessKey": "$PIR_S3_LOCAL_ACCESS_KEY", "secretKey": "$PIR_S3_LOCAL_SECRET_KEY" }],
      "actions": ["Admin", "Read", "List", "Tagging", "Write"]
    }
  ]
}
EOF
  chmod 600 "$S3_CONFIG"
}

s3_start() {
  s3_installed || s3_install
  pir_lock seaweedfs
  mkdir -p "$S3_DATA"
  local pid
  if pid="$(pir_pid_alive "$S3_PIDFILE" "$S3_PATTERN")"; then
    if pir_wait s3 "$PIR_START_TIMEOUT" "$S3_LOG" "$S3_PIDFILE" "$S3_PATTERN" s3_healthy; then
      pir_log "s3: already running (pid $pid) on $S3_URL, log: $S3_LOG"
      s3_vacuum_soon
      pir_unlock
      return 0
    fi
    pir_die "s3: pid $pid is running but unhealthy; run: $0 stop s3"
  fi
  local p
  for p in "$PIR_SEAWEEDFS_MASTER_PORT" "$PIR_SEAWEEDFS_VOLUME_PORT" "$PIR_SEAWEEDFS_FILER_PORT" "$PIR_S3_PORT"; do
    if pir_port_open "$p" || pir_port_open "$((p + 10000))"; then
      pir_die "s3: port 127.0.0.1:$p (or its gRPC port $((p + 10000))) is already in use by another process. Stop it or set the PIR_SEAWEEDFS_*_PORT / PIR_S3_PORT variables."
    fi
  done
  s3_write_config
  pir_log "s3: starting seaweedfs $PIR_SEAWEEDFS_VERSION (S3 on $S3_URL, data $S3_DATA)"
  # One process: master + volume + filer + S3 gateway. gRPC ports are the HTTP ports + 10000.
  # volumeSizeLimitMB=1024 and volume.max=0 (auto from free disk): small volume files, so the
  # data dir grows with what is stored rather than by 30 GB preallocation steps. The master's
  # vacuum (lib.sh: PIR_SEAWEEDFS_GARBAGE_THRESHOLD, …_VACUUM_SECONDS) keeps it to what is stored.
  pir_spawn "$S3_PIDFILE" "$S3_LOG" "$S3_BIN" server \
    -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -dir="$S3_DATA" \
    "$S3_PATTERN" \
    -master.volumeSizeLimitMB=1024 \
    -master.garbageThreshold="$PIR_SEAWEEDFS_GARBAGE_THRESHOLD" -master.vacuumIntervalSeconds="$PIR_SEAWEEDFS_VACUUM_SECONDS" \
    -volume.port="$PIR_SEAWEEDFS_VOLUME_PORT" -volume.max=0 \
    -filer -filer.port="$PIR_SEAWEEDFS_FILER_PORT" \
    -s3 -s3.port="$PIR_S3_PORT" -s3.config="$S3_CONFIG" -s3.domainName=localhost
  if ! pir_wait s3 "$PIR_START_TIMEOUT" "$S3_LOG" "$S3_PIDFILE" "$S3_PATTERN" s3_answers; then
    pir_stop_pid s3 "$S3_PIDFILE" "$S3_PATTERN" 20
    pir_die "s3: failed to start (full log: $S3_LOG)"
  fi
  if ! s3_create_bucket; then
    pir_stop_pid s3 "$S3_PIDFILE" "$S3_PATTERN" 20
    pir_die "s3: could not create bucket $PIR_S3_BUCKET_NAME (full log: $S3_LOG)"
  fi
  s3_vacuum_soon
  pir_log "s3: running (pid $(cat "$S3_PIDFILE")) on $S3_URL, bucket $PIR_S3_BUCKET_NAME, log: $S3_LOG"
  pir_unlock
}

s3_stop() {
  pir_lock seaweedfs
  pir_stop_pid s3 "$S3_PIDFILE" "$S3_PATTERN" 20
  pir_unlock
}

s3_status() {
  local pid
  if pid="$(pir_pid_alive "$S3_PIDFILE" "$S3_PATTERN")"; then
    if s3_healthy >/dev/null 2>&1; then
      echo "s3        running  healthy    pid=$pid  $S3_URL bucket=$PIR_S3_BUCKET_NAME  log=$S3_LOG"
      return 0
    fi
    echo "s3        running  UNHEALTHY  pid=$pid  $S3_URL bucket=$PIR_S3_BUCKET_NAME  log=$S3_LOG"
    return 1
  fi
  echo "s3        stopped                       $S3_URL  log=$S3_LOG"
  return 1
}

s3_env() {
  cat <<EOF
export PIR_S3_ENDPOINT=$S3_URL
export PIR_S3_BUCKET=$PIR_S3_BUCKET_NAME
export PIR_S3_ACCESS_KEY_ID=$PIR_S3_LOCAL_ACCESS_KEY PIR_S3_SECRET_ACCESS_KEY=$PIR_S3_LOCAL_SECRET_KEY
export PIR_S3_REGION=us-east-1 PIR_S3_FORCE_PATH_STYLE=true
EOF
}

s3_clean() {
  s3_stop
  rm -rf "$S3_DIR"
  pir_log "s3: removed $S3_DIR"
}
