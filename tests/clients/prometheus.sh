#!/usr/bin/env bash
# Finds or fetches Prometheus's `prometheus` and `promtool` for the tests (the deploy kit's rule
# checks and unit tests, `promtool check metrics`, the real-Prometheus scrape test) and prints the
# directory holding both. Both on PATH in one directory: that one. Otherwise Debian's
# `prometheus` package, unpacked under target/clients/prometheus with `apt-get download` and
# `dpkg -x`: no root needed, nothing installed system-wide, nothing run from the package's
# maintainer scripts. Idempotent and safe from several test processes at once (the flock
# setup.sh takes). TOLLGATE_PROMETHEUS_FROM_PACKAGE=1 skips PATH (to test the fetch).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dir="${TOLLGATE_CLIENTS_DIR:-$root/target/clients}"
mkdir -p "$dir"
exec 9>"$dir/.lock"
flock 9

if [ -z "${TOLLGATE_PROMETHEUS_FROM_PACKAGE:-}" ] \
  && promtool="$(command -v promtool)" && prometheus="$(command -v prometheus)" \
  && [ "$(dirname "$promtool")" = "$(dirname "$prometheus")" ]; then
  dirname "$promtool"
  exit 0
fi

unpacked="$dir/prometheus"
bin="$unpacked/usr/bin"
if ! { [ -x "$bin/promtool" ] && [ -x "$bin/prometheus" ]; }; then
  echo "tollgate tests: fetching Debian's prometheus package (promtool, prometheus) into $unpacked" >&2
  if ! command -v apt-get >/dev/null || ! command -v dpkg >/dev/null; then
    echo "no apt-get/dpkg here: install Prometheus 2.x so that prometheus and promtool are on PATH \
(https://prometheus.io/download/)" >&2
    exit 1
  fi
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  download() { (cd "$tmp" && apt-get -o APT::Sandbox::User=root download -qq prometheus) >&2 2>&1; }
  if ! download; then
    # The package lists may be missing (a fresh container): refresh them if allowed to.
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq >&2 && download
    else
      echo "apt-get download prometheus failed: run apt-get update (as root), or apt-get install -y \
prometheus, or put prometheus and promtool on PATH" >&2
      exit 1
    fi
  fi
  rm -rf "$unpacked.partial"
  dpkg -x "$tmp"/prometheus_*.deb "$unpacked.partial"
  rm -rf "$unpacked"
  mv "$unpacked.partial" "$unpacked"
fi
"$bin/promtool" --version >/dev/null 2>&1 || {
  echo "$bin/promtool does not run" >&2
  exit 1
}
echo "$bin"
