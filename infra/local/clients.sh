# shellcheck shell=bash
# Real Glance clients for the e2e tests, pinned and cached. Sourced by services.sh.
#
# - openstacksdk from PyPI in a venv, every package pinned by clients/openstacksdk-requirements.txt
# - tempest (OpenStack's integration tests) from PyPI in a venv, pinned by clients/tempest-requirements.txt
# - gophercloud (Go module proxy) compiled into the driver test/clients/gophercloud (go.mod/go.sum pin it)
# - the glance CLI comes from the `tools` target (Debian's python3-glanceclient)
#
# Each is cached under a directory named after the hash of the files that define it, so an edit
# to the lock file or the driver's sources means a rebuild, and the tests (test/support/clients.ts)
# compute the same hash to find exactly the build that matches the checkout.

PIR_REPO_DIR="$(cd "$PIR_INFRA_DIR/../.." && pwd)"
CLIENTS_CACHE="$PIR_CACHE_DIR/clients"
OPENSTACKSDK_LOCK="$PIR_INFRA_DIR/clients/openstacksdk-requirements.txt"
TEMPEST_LOCK="$PIR_INFRA_DIR/clients/tempest-requirements.txt"
GOPHERCLOUD_SRC="$PIR_REPO_DIR/test/clients/gophercloud"

# pir_files_key FILE... -> first 16 hex digits of sha256 over the files' concatenated bytes.
pir_files_key() { cat "$@" | sha256sum | cut -c1-16; }

openstacksdk_dir() { echo "$CLIENTS_CACHE/openstacksdk-$(pir_files_key "$OPENSTACKSDK_LOCK")"; }
tempest_dir() { echo "$CLIENTS_CACHE/tempest-$(pir_files_key "$TEMPEST_LOCK")"; }
gophercloud_bin() { echo "$CLIENTS_CACHE/gophercloud-$(pir_files_key "$GOPHERCLOUD_SRC/go.mod" "$GOPHERCLOUD_SRC/go.sum" "$GOPHERCLOUD_SRC/main.go")/pir-gophercloud"; }

openstacksdk_installed() { [[ -f "$(openstacksdk_dir)/.complete" ]]; }
tempest_installed() { [[ -f "$(tempest_dir)/.complete" ]]; }
gophercloud_installed() { [[ -x "$(gophercloud_bin)" ]]; }
clients_installed() { openstacksdk_installed && tempest_installed && gophercloud_installed; }

# python_client_install NAME LOCK DIR: a venv at DIR with every package of LOCK (pinned), cached.
python_client_install() {
  local name="$1" lock="$2" dir="$3"
  if [[ -f "$dir/.complete" ]]; then pir_log "clients: $name cached at $dir"; return 0; fi
  pir_cache_lock "clients-$name"
  if [[ -f "$dir/.complete" ]]; then pir_cache_unlock; return 0; fi
  pir_apt_install python3-venv
  local t0 log="$CLIENTS_CACHE/$name-install.log"; t0="$(pir_now)"
  mkdir -p "$CLIENTS_CACHE"
  rm -rf "$dir"
  pir_log "clients: installing $name into $dir (log: $log)"
  if ! { /usr/bin/python3 -m venv "$dir" && "$dir/bin/pip" install --no-input -q -r "$lock"; } >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    rm -rf "$dir"
    pir_cache_unlock; pir_die "clients: pip install of $name failed (log: $log)"
  fi
  local version
  version="$("$dir/bin/python" -c "from importlib import metadata; print(metadata.version('$name'))")" ||
    { pir_cache_unlock; pir_die "clients: $name does not import after install"; }
  touch "$dir/.complete"
  # Only the build matching the lock file is kept.
  find "$CLIENTS_CACHE" -maxdepth 1 -name "$name-*" -type d ! -path "$dir" -exec rm -rf {} +
  pir_cache_unlock
  pir_log "clients: $name $version ready in $(($(pir_now) - t0))s"
}

openstacksdk_install() { python_client_install openstacksdk "$OPENSTACKSDK_LOCK" "$(openstacksdk_dir)"; }
# tempest: OpenStack's own integration tests; test/e2e/tempest.test.ts runs its image API tests.
tempest_install() { python_client_install tempest "$TEMPEST_LOCK" "$(tempest_dir)"; }

gophercloud_install() {
  local bin; bin="$(gophercloud_bin)"
  if gophercloud_installed; then pir_log "clients: gophercloud driver cached at $bin"; return 0; fi
  pir_cache_lock clients-gophercloud
  if gophercloud_installed; then pir_cache_unlock; return 0; fi
  [[ -x "$PIR_GO" ]] || command -v "$PIR_GO" >/dev/null 2>&1 ||
    { pir_cache_unlock; pir_die "clients: Go toolchain not found (set PIR_GO; expected /usr/local/go/bin/go)"; }
  local t0 log="$CLIENTS_CACHE/gophercloud-build.log" build="$CLIENTS_CACHE/go-build.tmp"; t0="$(pir_now)"
  mkdir -p "$CLIENTS_CACHE" "$(dirname "$bin")"
  # The module cache (~20 MB) is kept for quick rebuilds; the build cache (~200 MB) is not.
  # GOPROXY is left as the machine has it; -mod=mod lets go.sum be completed if needed.
  local goenv=(env GOMODCACHE="$CLIENTS_CACHE/go-mod" GOCACHE="$build" GOFLAGS="-mod=mod -modcacherw -buildvcs=false"
    GOTOOLCHAIN=local CGO_ENABLED=0 GOWORK=off)
  pir_log "clients: building the gophercloud driver with $("$PIR_GO" version | cut -d' ' -f3) (log: $log; first build ~1-2 min)"
  if ! (cd "$GOPHERCLOUD_SRC" && "${goenv[@]}" "$PIR_GO" build -trimpath -o "$bin.tmp" .) >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    rm -rf "$build" "$bin.tmp"
    pir_cache_unlock; pir_die "clients: go build of test/clients/gophercloud failed (log: $log)"
  fi
  mv "$bin.tmp" "$bin"
  rm -rf "$build"
  find "$CLIENTS_CACHE" -maxdepth 1 -name 'gophercloud-*' -type d ! -path "$(dirname "$bin")" -exec rm -rf {} +
  pir_cache_unlock
  pir_log "clients: gophercloud driver $("$PIR_GO" version -m "$bin" | awk '/gophercloud\/v2/ {print $3}') at $bin in $(($(pir_now) - t0))s"
}

clients_install() {
  openstacksdk_install
  tempest_install
  gophercloud_install
  command -v glance >/dev/null 2>&1 || pir_log "clients: the glance CLI comes with 'install tools'"
}

# For `services.sh env`: where the tests find the clients (they compute the same paths themselves).
clients_env() {
  cat <<EOF
export PIR_OPENSTACKSDK_PYTHON=$(openstacksdk_dir)/bin/python
export PIR_TEMPEST=$(tempest_dir)/bin/tempest
export PIR_GOPHERCLOUD_DRIVER=$(gophercloud_bin)
EOF
}
