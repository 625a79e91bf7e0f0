#!/usr/bin/env bash
# Checks the dependency graph with cargo-deny against deny.toml: licences, bans (duplicates,
# OpenSSL), sources (crates.io only) and, with network access to the RustSec database,
# advisories. Installs cargo-deny with `cargo install` when it is missing (a few minutes of
# compiling the first time, which is why scripts/test.sh does not run this).
#
# Usage: scripts/deny.sh            licences, bans, sources and advisories
#        scripts/deny.sh CHECK...   only those (e.g. `licenses bans sources` offline)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-deny >/dev/null 2>&1; then
  printf '==> installing cargo-deny\n' >&2
  cargo install --locked cargo-deny
fi

checks=("$@")
[ ${#checks[@]} -gt 0 ] || checks=(licenses bans sources advisories)
exec cargo deny check "${checks[@]}"
