#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/fuzz_targets/) for a fixed time budget, growing its corpus
# in fuzz/corpus/<target>/, then minimises each corpus (`cargo fuzz cmin`) so what is committed
# stays small. The normal test suite replays the committed corpora (see the *_fuzz_seeds tests).
#
#   scripts/fuzz.sh                      # every target, 300 s each
#   FUZZ_SECONDS=60 scripts/fuzz.sh node_http coord_json
#
# Environment:
#   FUZZ_SECONDS    time budget per target, seconds (default 300)
#   FUZZ_SANITIZER  cargo-fuzz sanitizer (default none: the crates forbid unsafe code, and
#                   without AddressSanitizer a target runs several times faster; use address
#                   when unsafe code or C dependencies are under test)
#   FUZZ_NICE       niceness of the fuzzing processes (default 10: share the machine)
#
# Needs the nightly toolchain and cargo-fuzz (`rustup toolchain install nightly`,
# `cargo install cargo-fuzz --locked`). A crash stops the script with the reproducer's path
# under fuzz/artifacts/<target>/; replay it with `cargo +nightly fuzz run <target> <file>`,
# fix the bug, and add the reproducer as a named seed (`seed_*`) with a regression test.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds=${FUZZ_SECONDS:-300}
sanitizer=${FUZZ_SANITIZER:-none}
niceness=${FUZZ_NICE:-10}

log() { printf '==> %s\n' "$*" >&2; }
fail() { printf 'error: %s\n' "$*" >&2; exit 1; }

command -v cargo-fuzz >/dev/null 2>&1 || fail "cargo-fuzz is missing: cargo install cargo-fuzz --locked"
rustup toolchain list | grep -q '^nightly' || fail "the nightly toolchain is missing: rustup toolchain install nightly"

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

log "building ${targets[*]} (sanitizer: $sanitizer)"
for target in "${targets[@]}"; do
  nice -n "$niceness" cargo +nightly fuzz build --release -s "$sanitizer" "$target"
done

summary=()
for target in "${targets[@]}"; do
  corpus="corpus/$target"
  mkdir -p "$corpus"
  log "fuzzing $target for ${seconds}s"
  output=$(mktemp)
  if ! nice -n "$niceness" cargo +nightly fuzz run --release -s "$sanitizer" "$target" "$corpus" -- \
      -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 2>&1 | tee "$output" | grep -E '^#[0-9]+[[:space:]]+(DONE|pulse)' >&2; then
    :
  fi
  if grep -qE 'SUMMARY|panicked|deadly signal|ERROR: libFuzzer' "$output"; then
    grep -E 'panicked|SUMMARY|Test unit written' "$output" >&2 || true
    fail "$target found a crash; see fuzz/artifacts/$target/"
  fi
  executions=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$output" | grep -oE '[0-9]+$' || echo '?')
  rm -f "$output"

  # cmin keeps only inputs that add coverage and renames them by content hash; the named seeds
  # (`seed_*`, which tests assert on) are set aside and put back.
  seeds=$(mktemp -d)
  find "$corpus" -maxdepth 1 -name 'seed_*' -exec mv {} "$seeds/" \;
  nice -n "$niceness" cargo +nightly fuzz cmin --release -s "$sanitizer" "$target" "$corpus" >/dev/null 2>&1 \
    || fail "cmin of $target failed"
  for seed in "$seeds"/*; do
    [ -e "$seed" ] || continue
    rm -f "$corpus/$(sha1sum < "$seed" | cut -c1-40)"
    mv "$seed" "$corpus/"
  done
  rmdir "$seeds"
  files=$(find "$corpus" -maxdepth 1 -type f | wc -l)
  size=$(du -sk "$corpus" | cut -f1)
  summary+=("$target: ${executions} executions in ${seconds}s; corpus ${files} files, ${size} KiB")
done

log "done"
printf '%s\n' "${summary[@]}"
