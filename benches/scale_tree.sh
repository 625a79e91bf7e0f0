#!/usr/bin/env bash
# The relay tree at scale on one machine: a coordinator (SQLite), one origin publishing the
# shipped sample with ffmpeg, RELAYS friend nodes as processes (each on its own loopback
# address, 127.1.x.y), and WATCHERS verifying viewers (`streamr watch`: routed by the
# coordinator, every segment checked against the origin's hashes, receipts signed). Halfway
# through, the inner relay with the most children is killed with SIGKILL.
#
# Reports: origin egress (RTMP pulls at the origin) against the flat topology (one pull per
# relaying friend), the tree's depth distribution, how long the killed relay's children took to
# be re-parented, the viewers' verified/unverified segments and fail-overs, and CPU and memory
# per relay process.
#
# Not part of the test suite. Build first:
#   cargo build --release -p streamr-coordinator -p streamr-node -p streamr
# then e.g.
#   RELAYS=100 WATCHERS=300 FANOUT=4 DURATION=90 benches/scale_tree.sh
set -euo pipefail

RELAYS=${RELAYS:-100}
WATCHERS=${WATCHERS:-300}
FANOUT=${FANOUT:-4}
DURATION=${DURATION:-90}
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release}
SAMPLE=${SAMPLE:-samples/sample.flv}
COORD_PORT=${COORD_PORT:-18090}
ORIGIN_RTMP=${ORIGIN_RTMP:-11935}
ORIGIN_HTTP=${ORIGIN_HTTP:-18080}

for tool in "$BIN/streamr-coordinator" "$BIN/streamr-node" "$BIN/streamr" ffmpeg sqlite3 jq ss curl; do
    command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

ms() { date +%s%3N; }
coord="http://127.0.0.1:$COORD_PORT"
token=scale-admin
secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')

"$BIN/streamr-coordinator" --listen "127.0.0.1:$COORD_PORT" \
    --database "sqlite://$work/c.db?synchronous=normal" --admin-token "$token" \
    --coordinator-secret-key "$secret" --local-trial --rate-limit 0 \
    --relay-fanout "$FANOUT" --probe-interval-secs 0 --log-format json \
    --http-max-connections 100000 --http-max-connections-per-client 100000 \
    2>"$work/coordinator.log" &
pids+=($!)
until curl -sf "$coord/healthz" >/dev/null; do sleep 0.2; done
public=$(curl -sf "$coord/coordinator" | jq -r .coordinator_key)
key=$(curl -sf -X POST -H "authorization: Bearer $token" -H 'content-type: application/json' \
    -d '{"id":"show","title":"scale"}' "$coord/streams" | jq -r .stream_key)

"$BIN/streamr-node" --rtmp-listen "127.0.0.1:$ORIGIN_RTMP" --http-listen "127.0.0.1:$ORIGIN_HTTP" \
    --coordinator "$coord" --coordinator-public-key "$public" --identity "$work/origin.key" \
    --log-format json 2>"$work/origin.log" &
pids+=($!)
sleep 1
ffmpeg -v error -re -stream_loop -1 -i "$SAMPLE" -c copy -f flv \
    "rtmp://127.0.0.1:$ORIGIN_RTMP/live/show?key=$key" </dev/null 2>"$work/ffmpeg.log" &
pids+=($!)

declare -A relay_pid
for i in $(seq 1 "$RELAYS"); do
    ip="127.1.$((i / 200)).$((i % 200 + 1))"
    "$BIN/streamr-node" --rtmp-listen "$ip:1935" --http-listen "$ip:8080" \
        --upstream "rtmp://127.0.0.1:$ORIGIN_RTMP" --coordinator "$coord" \
        --coordinator-public-key "$public" --identity "$work/r$i.key" \
        --operator "r$i" --payout-address "0xr$i" --log-format json 2>"$work/r$i.log" &
    relay_pid[$ip]=$!
    pids+=($!)
done
active_relays() { curl -sf "$coord/nodes" | jq '[.[] | select(.active)] | length' || true; }
until [ "$(active_relays)" -ge "$RELAYS" ] 2>/dev/null; do
    sleep 0.5
done
echo "coordinator, origin and $RELAYS relays up; starting $WATCHERS viewers for ${DURATION}s" >&2

started=$(ms)
for w in $(seq 1 "$WATCHERS"); do
    "$BIN/streamr" watch show --coordinator "$coord" --duration "$DURATION" 2>"$work/w$w.log" &
    pids+=($!)
    sleep 0.02
done

sleep $((DURATION / 2))
origin_pulls=$(ss -Htn state established "( sport = :$ORIGIN_RTMP )" | wc -l)
origin_pulls=$((origin_pulls - 1)) # the publisher
relaying=$(curl -sf "$coord/nodes" | jq '[.[] | select(.streams_json | contains("show"))] | length')
depths=$(sqlite3 "$work/c.db" "WITH RECURSIVE d(node, depth) AS (
    SELECT node_id, 1 FROM relay_assignments r WHERE parent_id = (SELECT origin_node FROM streams WHERE id = 'show')
    UNION ALL SELECT r.node_id, d.depth + 1 FROM relay_assignments r JOIN d ON r.parent_id = d.node
    WHERE d.depth < 16) SELECT depth || ':' || COUNT(*) FROM d GROUP BY depth ORDER BY depth;" | tr '\n' ' ')

# Kill the inner relay with the most children.
victim=$(sqlite3 "$work/c.db" "SELECT parent_id FROM relay_assignments WHERE parent_id != \
    (SELECT origin_node FROM streams WHERE id = 'show') GROUP BY parent_id ORDER BY COUNT(*) DESC LIMIT 1;")
children=$(sqlite3 "$work/c.db" "SELECT node_id FROM relay_assignments WHERE parent_id = '$victim';")
victim_ip=$(curl -sf "$coord/nodes/$victim" | jq -r .rtmp_url | sed -E 's#rtmp://([^:/]+).*#\1#')
cpu_mem=$(ps -o rss=,times= -p "$(echo "${relay_pid[@]}" | tr ' ' ',')" |
    awk '{ rss += $1; cpu += $2; n++ } END { if (n) printf "%.1f MiB RSS, %.2f CPU-s", rss / n / 1024, cpu / n }')
kill -9 "${relay_pid[$victim_ip]}"
killed=$(ms)
reparented=""
for _ in $(seq 1 600); do
    left=0
    for child in $children; do
        parent=$(sqlite3 "$work/c.db" "SELECT parent_id FROM relay_assignments WHERE node_id = '$child';")
        [ "$parent" = "$victim" ] && left=$((left + 1))
    done
    if [ "$left" -eq 0 ]; then reparented=$(($(ms) - killed)); break; fi
    sleep 0.1
done

origin_pulls_late=$(($(ss -Htn state established "( sport = :$ORIGIN_RTMP )" | wc -l) - 1))

wait_until=$((started + DURATION * 1000 + 15000))
while [ "$(ms)" -lt "$wait_until" ] && pgrep -f "streamr watch show --coordinator $coord" >/dev/null; do
    sleep 1
done
verified=0 unverified=0 failovers=0 failed=0
for w in $(seq 1 "$WATCHERS"); do
    line=$(grep -E '^node ' "$work/w$w.log" | tail -1 || true)
    if [ -z "$line" ]; then failed=$((failed + 1)); continue; fi
    verified=$((verified + $(sed -E 's/.*\(([0-9]+) verified.*/\1/' <<<"$line")))
    unverified=$((unverified + $(sed -E 's/.* ([0-9]+) unverified.*/\1/' <<<"$line")))
    failovers=$((failovers + $(sed -E 's/.*failovers ([0-9]+).*/\1/' <<<"$line")))
done

cat <<EOF
relays: $RELAYS, viewers: $WATCHERS, fan-out k: $FANOUT, load average: $(cut -d' ' -f1-3 /proc/loadavg)
origin egress: $origin_pulls RTMP pulls at the origin halfway, $origin_pulls_late after the kill and re-parenting (flat topology: $relaying, one per relaying friend)
tree depth (tier:relays): $depths
killed inner relay ${victim:0:8} with $(wc -w <<<"$children") children; all re-parented after: ${reparented:-not within 60 s} ms
viewers: $verified segments verified, $unverified unverified, $failovers fail-overs, $failed without a report
per relay process (mid-run): $cpu_mem
EOF
