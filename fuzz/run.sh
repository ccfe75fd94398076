#!/usr/bin/env bash
# Fuzzes tollgate's parsers of untrusted bytes: the SSE reader and usage-chunk filter, the usage
# parsers, and the request peek. Usage: fuzz/run.sh [seconds per target, default 60] [target…]
# A long run: `bash fuzz/run.sh 3600`. Needs `cargo install cargo-fuzz --locked`; the machine's
# stable toolchain is enough (RUSTC_BOOTSTRAP unlocks the sanitizer flags cargo-fuzz passes).
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(sse_reader usage_parser request_peek)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --version 0.13.2 --locked
export RUSTC_BOOTSTRAP=1
for target in "${targets[@]}"; do
  # New inputs go to a scratch directory; the committed seed corpus is only read.
  scratch="$(mktemp -d)"
  echo "fuzz: $target for ${seconds}s"
  cargo fuzz run --fuzz-dir . "$target" "$scratch" "corpus/$target" -- -max_total_time="$seconds" -print_final_stats=1 2>&1 \
    | grep -E "^(Done|stat::number_of_executed_units)|ERROR|panicked|SUMMARY" || true
  test -z "$(ls -A artifacts/"$target" 2>/dev/null)" || { echo "fuzz: $target found a crash, see fuzz/artifacts/$target" >&2; exit 1; }
  rm -rf "$scratch"
done
