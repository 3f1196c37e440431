#!/usr/bin/env bash
# Local test services for PIR: Redis, Kafka (KRaft), FerretDB (MongoDB API), Keystone, SeaweedFS (S3).
#
#   infra/local/services.sh install [all|redis|kafka|ferretdb|postgres|keystone|s3|tools|clients]
#   infra/local/services.sh start   [all|redis|kafka|ferretdb|postgres|keystone|s3]
#   infra/local/services.sh stop    [all|redis|kafka|ferretdb|postgres|keystone|s3]
#   infra/local/services.sh status  [all|redis|kafka|ferretdb|postgres|keystone|s3]
#   infra/local/services.sh env     [all|keystone|s3]   (all: service URLs incl. PIR_S3_*; keystone: PIR_KEYSTONE_*; s3: only PIR_S3_*)
#   infra/local/services.sh clean   [all|redis|kafka|ferretdb|postgres|keystone|s3]   (stop + delete data/logs)
#
# See infra/local/README.md for versions, ports, logs and environment knobs.
set -euo pipefail

# shellcheck source=lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
# shellcheck source=redis.sh
source "$PIR_INFRA_DIR/redis.sh"
# shellcheck source=kafka.sh
source "$PIR_INFRA_DIR/kafka.sh"
# shellcheck source=postgres.sh
source "$PIR_INFRA_DIR/postgres.sh"
# shellcheck source=ferretdb.sh
source "$PIR_INFRA_DIR/ferretdb.sh"
# shellcheck source=keystone.sh
source "$PIR_INFRA_DIR/keystone.sh"
# shellcheck source=seaweedfs.sh
source "$PIR_INFRA_DIR/seaweedfs.sh"
# shellcheck source=clients.sh
source "$PIR_INFRA_DIR/clients.sh"

# PostgreSQL runs only as FerretDB's backend (PIR_FERRETDB_BACKEND=postgresql); ferretdb_start starts it.
if [[ "$PIR_FERRETDB_BACKEND" == postgresql ]]; then SERVICES=(redis kafka postgres ferretdb keystone s3); else SERVICES=(redis kafka ferretdb keystone s3); fi
# chromium: the ops dashboard's browser test drives Debian's Chromium (playwright-core brings no browser).
# genisoimage: real ISO 9660/UDF images for the format tests (as os-test-images makes them).
TOOLS_PACKAGES=(qemu-utils python3-glanceclient python3-openstackclient zstd xz-utils bzip2 tmux curl chromium genisoimage)

usage() {
  sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

tools_install() {
  pir_apt_install "${TOOLS_PACKAGES[@]}"
  local c missing=()
  for c in qemu-img glance openstack zstd xz bzip2 tmux curl genisoimage; do command -v "$c" >/dev/null 2>&1 || missing+=("$c"); done
  ((${#missing[@]} == 0)) || pir_die "tools: commands missing after install: ${missing[*]}"
  pir_log "tools: $(qemu-img --version | head -1); glance $(glance --version 2>&1 | tail -1); $(zstd --version | head -1)"
}

# targets KIND ARG -> list of services (KIND=install also allows "tools" and "clients").
targets() {
  local kind="$1" arg="${2:-all}"
  case "$arg" in
    all)
      if [[ "$kind" == install ]]; then echo tools clients "${SERVICES[@]}"; else echo "${SERVICES[@]}"; fi ;;
    redis | kafka | ferretdb | keystone | postgres | s3) echo "$arg" ;;
    tools | clients) if [[ "$kind" == install ]]; then echo "$arg"; else usage; fi ;;
    *) usage ;;
  esac
}

# print_env [all|keystone]: export lines. OS_* (the demo user of the local Keystone) do not
# change PIR; PIR_KEYSTONE_* switch PIR to Keystone, so only `env keystone` prints them.
print_env() {
  case "${1:-all}" in
    all)
      cat <<EOF
export PIR_REDIS_URL=redis://127.0.0.1:$PIR_REDIS_PORT
export PIR_KAFKA_BROKERS=127.0.0.1:$PIR_KAFKA_PORT
export PIR_MONGODB_URL=mongodb://127.0.0.1:$PIR_FERRETDB_PORT/pir
EOF
      s3_env
      clients_env
      ;;
    s3)
      s3_env
      return 0
      ;;
    keystone)
      cat <<EOF
export PIR_KEYSTONE_URL=$KEYSTONE_URL
export PIR_KEYSTONE_USERNAME=pir PIR_KEYSTONE_PASSWORD=pir-pass PIR_KEYSTONE_PROJECT=service
EOF
      ;;
    *) usage ;;
  esac
  cat <<EOF
export OS_AUTH_URL=$KEYSTONE_URL OS_IDENTITY_API_VERSION=3 OS_REGION_NAME=RegionOne
export OS_USER_DOMAIN_NAME=Default OS_PROJECT_DOMAIN_NAME=Default
export OS_USERNAME=demo OS_PASSWORD=demo-pass OS_PROJECT_NAME=demo
EOF
}

main() {
  local cmd="${1:-}" s rc=0 t0 list=""
  [[ $# -le 2 ]] || usage
  case "$cmd" in
    install | start | stop | status | clean) list="$(targets "$cmd" "${2:-all}")" || exit 2 ;;
    env) ;;
    *) usage ;;
  esac
  t0="$(pir_now)"
  case "$cmd" in
    install)
      for s in $list; do "${s}_install"; done
      pir_log "install done in $(($(pir_now) - t0))s (cache: $PIR_CACHE_DIR)"
      ;;
    start)
      # Install everything first so the slow parts are visible as such.
      for s in $list; do "${s}_installed" || "${s}_install"; done
      for s in $list; do "${s}_start"; done
      pir_log "start done in $(($(pir_now) - t0))s; state and logs under $PIR_LOCAL_DIR/<service>/"
      ;;
    stop)
      # Reverse order: keystone, ferretdb, postgres, kafka, redis.
      for s in $(tr ' ' '\n' <<<"$list" | tac); do "${s}_stop"; done
      ;;
    clean)
      for s in $(tr ' ' '\n' <<<"$list" | tac); do "${s}_clean"; done
      ;;
    status)
      for s in $list; do "${s}_status" || rc=1; done
      return "$rc"
      ;;
    env) print_env "${2:-all}" ;;
  esac
}

main "$@"
