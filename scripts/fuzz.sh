#!/usr/bin/env bash
# Long fuzz runs, outside the test command: each cargo-fuzz target in fuzz/ for N minutes
# (default 5). Needs a nightly toolchain; installs cargo-fuzz if it is missing. Crashes are kept
# in fuzz/artifacts/<target>/ and reproduce with `cargo +nightly fuzz run <target> <file>`.
#   scripts/fuzz.sh [minutes] [target...]
set -euo pipefail
cd "$(dirname "$0")/.."
die() { printf '\nERROR: %s\n' "$*" >&2; exit 1; }

minutes="${1:-5}"
shift || true
case "$minutes" in ''|*[!0-9]*) die "minutes must be a whole number, got '$minutes'";; esac
rustup toolchain list | grep -q '^nightly' ||
  die "cargo-fuzz needs a nightly toolchain: rustup toolchain install nightly"
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo +nightly install cargo-fuzz --locked || die "cannot install cargo-fuzz (cargo install cargo-fuzz)"
fi
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo +nightly fuzz list)
for t in "${targets[@]}"; do
  printf '\n==> fuzz %s for %s min\n' "$t" "$minutes"
  cargo +nightly fuzz run "$t" -- -max_total_time=$((minutes * 60)) -rss_limit_mb=2048
done
