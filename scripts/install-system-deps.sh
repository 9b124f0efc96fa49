#!/usr/bin/env bash
# Install the system packages the test suite needs (PostgreSQL, Redis, Chromium) when missing.
# Debian's packages only; runs apt-get as root, or through sudo when available.
set -euo pipefail

need=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# `make bench` also needs wrk, the load generator.
if [ "${WITH_BENCH:-}" = 1 ]; then command -v wrk >/dev/null 2>&1 || need+=(wrk); fi

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
echo "installing system packages: ${need[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian starts a cluster and a redis service on install; the tests start their own.
$sudo service postgresql stop >/dev/null 2>&1 || true
$sudo service redis-server stop >/dev/null 2>&1 || true
