#!/usr/bin/env bash
# Runs the whole StreamrP2P test suite: formatting, clippy (-D warnings) and every test, including
# the interop tests against real ffmpeg/ffprobe, gstreamer, rtmpdump, VLC and PostgreSQL.
#
# Missing tools are installed from Debian's packages when we are root. With CI=true a tool or
# service that is still missing afterwards is a failure, never a silent skip.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> [%4ds] %s\n' "$SECONDS" "$*" >&2; }
fail() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Debian packages that provide the real peers our interop tests talk to.
declare -A PACKAGE_OF=(
  [ffmpeg]=ffmpeg
  [ffprobe]=ffmpeg
  [gst-launch-1.0]="gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-libav"
  [rtmpdump]=rtmpdump
  [cvlc]="vlc-bin vlc-plugin-base"
  [pg_isready]=postgresql-client
  [nginx]="nginx-light libnginx-mod-rtmp"
  [curl]=curl
  [runuser]=util-linux
  [sqlite3]=sqlite3
  [systemd-analyze]=systemd
  # The node's UPnP-IGD port mapping is tested against a real router daemon in namespaces.
  [miniupnpd]="miniupnpd-nftables miniupnpd"
  [nft]=nftables
)

missing_packages=()
for tool in "${!PACKAGE_OF[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || missing_packages+=(${PACKAGE_OF[$tool]})
done
# nginx-rtmp is the reference peer for our RTMP client and the fan-out comparison.
[ -f /usr/lib/nginx/modules/ngx_rtmp_module.so ] || missing_packages+=(libnginx-mod-rtmp)
# The PostgreSQL-over-TLS test starts a throwaway cluster of its own with the server's initdb.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing_packages+=(postgresql)
# The gstreamer RTMP elements live in plugins-bad; check for them explicitly.
if command -v gst-inspect-1.0 >/dev/null 2>&1 && ! gst-inspect-1.0 rtmp2sink >/dev/null 2>&1; then
  missing_packages+=(gstreamer1.0-plugins-bad)
fi

if [ ${#missing_packages[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing missing packages: ${missing_packages[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing_packages[@]}" >/dev/null
  fi
fi

for tool in "${!PACKAGE_OF[@]}"; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    fail "$tool is required by the interop tests and could not be installed"
  fi
done
[ -f /usr/lib/nginx/modules/ngx_rtmp_module.so ] || fail "the nginx RTMP module is missing (libnginx-mod-rtmp)"
gst-inspect-1.0 rtmp2sink >/dev/null 2>&1 || fail "gstreamer rtmp2sink element is missing (gstreamer1.0-plugins-bad)"
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || fail "PostgreSQL's initdb is missing (postgresql)"

# PostgreSQL: the storage suite runs against a real server. Start the local cluster if it is down.
export STREAMR_TEST_POSTGRES_URL="${STREAMR_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    log "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  fi
fi
pg_isready -q -h 127.0.0.1 -p 5432 || fail "PostgreSQL is not reachable on 127.0.0.1:5432"

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
# The cargo-fuzz targets are their own workspace (fuzzing needs nightly); lint them on the
# stable toolchain so they keep building against the library APIs they exercise. The lint
# builds in the main workspace's target directory: fuzz/Cargo.lock pins the same versions and
# fuzz/Cargo.toml the same dependency profile, so only the crates whose features differ there
# are checked again (on a cold build, 40 s instead of 100 s for its own target directory).
fuzz_target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
(cd fuzz && CARGO_TARGET_DIR="$fuzz_target_dir" cargo clippy --locked --bins -- -D warnings)

# Each library builds with its default features off (what an embedder of the sans-IO core
# alone compiles) and with each feature on its own. Each run is its own feature resolution, so
# runs are not merged: one package's features would leak into another's dependencies. streamr-net
# without default features is checked by the `server` run, which compiles it with no features
# and the same dependency features as on its own (`cargo tree -e normal,no-proc-macro -p
# streamr-net --no-default-features` shows the same as under that run).
log "cargo check: library features"
for args in "-p streamr-media --no-default-features" \
            "-p streamr-media --no-default-features --features server" \
            "-p streamr-media --no-default-features --features http" \
            "-p streamr-core --no-default-features" \
            "-p streamr-tls --no-default-features" \
            "-p streamr-coord --no-default-features" \
            "-p streamr-client --no-default-features" \
            "-p streamr-client --no-default-features --features openapi" \
            "-p streamr --no-default-features"; do
  # shellcheck disable=SC2086 # the arguments are split on purpose
  cargo check --locked $args
done

# Test output is kept so the run can close with one summary line.
test_log="$(mktemp)"
hermetic_path="$(mktemp -d)"
trap 'rm -f "$test_log"; rm -rf "$hermetic_path"' EXIT

# Two tiers, every test run once. Tests that need a peer outside Rust (ffmpeg, gstreamer,
# rtmpdump, nginx, PostgreSQL, curl, sqlite3, systemd-analyze...) carry
# `#[ignore = "interop: needs <tool>"]`, so a plain `cargo test` passes on a machine with only
# Rust. The hermetic tier runs here with a PATH that holds only the Rust toolchain, the linker
# and a POSIX shell, and with PostgreSQL out of reach: a new test that needs a peer but lacks
# the marker fails here. The interop tier (`-- --ignored`) then runs with everything.
#
# Both tiers run under cargo-nextest (settings in .config/nextest.toml): each test in its own
# process, both cores kept busy across test binaries, a hung test killed after five minutes;
# doctests (which nextest does not run) follow with `cargo test --doc`. The interop tier runs
# in two parts: first its tests that mostly wait on real peers, four at a time (profile
# `interop`); then the `timing-bound` group (end-to-end scenarios that hold real processes to
# timing bounds), each test alone, never beside a test of another binary.
if ! command -v cargo-nextest >/dev/null 2>&1; then
  log "installing cargo-nextest"
  cargo install cargo-nextest --locked >/dev/null 2>&1 || true
fi
command -v cargo-nextest >/dev/null 2>&1 || fail "cargo-nextest is required and could not be installed"

log "cargo test --no-run"
cargo test --workspace --locked --no-run
for tool in cargo cargo-nextest rustc rustdoc cc ld sh timeout kill; do
  ln -s "$(type -P "$tool")" "$hermetic_path/$tool"
done
# A failing tier does not stop the run: every tier runs and the summary counts the failures.
status=0
log "cargo test: hermetic tier (PATH=$hermetic_path, no PostgreSQL)"
PATH="$hermetic_path" STREAMR_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:1/postgres \
  cargo nextest run --workspace --locked --no-fail-fast --profile hermetic 2>&1 | tee -a "$test_log" || status=1
PATH="$hermetic_path" cargo test --workspace --locked --doc 2>&1 | tee -a "$test_log" || status=1
# The API property test and the docs build run beside the first interop part, whose tests mostly
# wait on real peers; their output joins the log when they are done.
side_log="$(mktemp)"
(
  side=0
  # The coordinator's API against its own OpenAPI document: schemathesis (from PyPI, installed
  # when missing; with CI=true a failure when it cannot be) against a real coordinator process.
  printf '==> API property test (tests/api/schemathesis.sh)\n'
  tests/api/schemathesis.sh || side=1
  printf '==> cargo doc\n'
  # A failed docs build counts in the closing summary (as `cargo-doc fail 1`), not only in
  # the exit status.
  if ! RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked >/dev/null; then
    side=1
    printf 'cargo-doc fail 1\n'
  fi
  exit "$side"
) >"$side_log" 2>&1 &
side_pid=$!
log "cargo test: interop tier (--run-ignored only), beside the API property test and cargo doc"
cargo nextest run --workspace --locked --no-fail-fast --run-ignored only --profile interop \
  -E 'not group(timing-bound)' 2>&1 | tee -a "$test_log" || status=1
wait "$side_pid" || status=1
log "API property test and cargo doc done"
cat "$side_log" | tee -a "$test_log"
rm -f "$side_log"
log "cargo test: interop tier, timing-bound group"
cargo nextest run --workspace --locked --no-fail-fast --run-ignored only --profile timing-bound \
  -E 'group(timing-bound)' 2>&1 | tee -a "$test_log" || status=1

# The dashboard and watch page in Chromium against `streamr demo` (installs chromium and the
# npm packages when missing; fails, never skips, when it cannot).
log "browser test (tests/browser)"
tests/browser/run.sh 2>&1 | tee -a "$test_log" || status=1

# One closing line over every test runner above: nextest's `Summary` lines (the hermetic tier
# and the interop tier's two runs), cargo's `test result:` lines (doctests), node's test runner
# and schemathesis (which prints `schemathesis pass N` or `schemathesis fail N`). Each nextest
# run's skipped tests are the other runs' (the tiers split the tests, the interop runs split
# the ignored ones by group), so those are not counted; a test that did not run for any other
# reason is: doctests marked `ignore`, node's `skipped`, `todo` and `cancelled`.
read -r passed failed skipped < <(awk '
  /^ *Summary \[/ {
    for (i = 1; i <= NF; i++) {
      n = $i + 0; w = $(i + 1); gsub(/[,()]/, "", w)
      if (w == "passed") p += n
      if (w == "failed" || w == "timed" || w == "leaky-failed") f += n
    }
    next
  }
  /^test result:/ { p += $4; f += $6; s += $8 }
  /^[^ ]+ pass [0-9]+$/ { p += $3 }
  /^[^ ]+ fail [0-9]+$/ { f += $3 }
  /^[^ ]+ (skipped|todo|cancelled) [0-9]+$/ { s += $3 }
  END { print p + 0, f + 0, s + 0 }' "$test_log")
printf 'summary: %s passed, %s failed, %s skipped\n' "$passed" "$failed" "$skipped"
log "done"
exit "$status"
