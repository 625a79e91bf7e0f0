#!/usr/bin/env bash
# The relay tree at scale on one machine: a coordinator (SQLite; with REPLICAS=2 two
# coordinator replicas sharing a PostgreSQL database behind an nginx round-robin proxy), one
# origin fed by `streamr-load publish` (the shipped sample, every video frame stamped with its
# send time), RELAYS friend nodes as processes (each on its own loopback address, 127.1.x.y),
# LOAD_VIEWERS light RTMP viewers (`streamr-load play` on grant URLs the coordinator handed
# out, grouped by the tier of the node they play from) and WATCHERS verifying viewers
# (`streamr watch`: routed by the coordinator, every segment checked against the origin's
# hashes, receipts signed). Halfway through, the inner relay with the most children is killed
# with SIGKILL. With REPLICAS=2 KILL_REPLICA=1, coordinator replica b is killed with SIGKILL
# a quarter of the way through (before the relay), while a prober keeps asking for grants
# through the proxy: the report counts the grants answered that the database lacks and the
# gaps in the origin's segment reports (both should be 0) beside the viewers' stalls.
#
# Reports: origin egress (RTMP pulls at the origin) against the flat topology (one pull per
# relaying friend); the tree's tiers; latency from the publisher to the viewers of each tier
# (p50/p95 over the viewers' mean hop latency) and what each tier adds; how long the killed
# relay's children took to be re-parented and the longest frozen picture of the viewers of
# its subtree (and of everyone else); the verifying viewers' segments that matched the
# origin's hashes; CPU and memory per relay, of the origin and of the coordinator(s).
#
# Not part of the test suite. Build first (PROFILE=debug for debug binaries):
#   cargo build --release -p streamr-coordinator -p streamr-node -p streamr -p streamr-load
# then e.g.
#   RELAYS=100 LOAD_VIEWERS=2000 WATCHERS=50 DURATION=90 benches/scale_tree.sh
#   REPLICAS=2 RELAYS=100 LOAD_VIEWERS=2000 WATCHERS=50 DURATION=90 benches/scale_tree.sh
set -euo pipefail

RELAYS=${RELAYS:-100}
WATCHERS=${WATCHERS:-50}
LOAD_VIEWERS=${LOAD_VIEWERS:-2000}
FANOUT=${FANOUT:-4}
DURATION=${DURATION:-90}
REPLICAS=${REPLICAS:-1}
KILL_REPLICA=${KILL_REPLICA:-}
PROFILE=${PROFILE:-release}
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/$PROFILE}
SAMPLE=${SAMPLE:-samples/sample.flv}
COORD_PORT=${COORD_PORT:-18090}
ORIGIN_RTMP=${ORIGIN_RTMP:-11935}
ORIGIN_HTTP=${ORIGIN_HTTP:-18080}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}

for tool in "$BIN/streamr-coordinator" "$BIN/streamr-node" "$BIN/streamr" "$BIN/streamr-load" \
    sqlite3 jq ss curl awk; do
    command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done
if [ "$REPLICAS" = 2 ]; then
    for tool in psql nginx; do command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }; done
fi
for var in $(env | grep -o '^STREAMR_[A-Z_]*' || true); do unset "$var"; done

work=$(mktemp -d)
pids=()
db_name="scale_tree_$$"
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ "$REPLICAS" = 2 ]; then psql -q "$PG_URL/postgres" -c "DROP DATABASE IF EXISTS $db_name" || true; fi
    [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

ms() { date +%s%3N; }
coord="http://127.0.0.1:$COORD_PORT"
token=scale-admin
secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
coordinator_pids=()

# One SQL query against the coordinator's database, answers one per line, columns by '|'.
sql() {
    if [ "$REPLICAS" = 2 ]; then psql -qAt "$PG_URL/$db_name" -c "$1"; else sqlite3 "$work/c.db" "$1"; fi
}

start_coordinator() { # listen address, database URL, replica name
    "$BIN/streamr-coordinator" --listen "$1" --database "$2" --replica-id "$3" \
        --admin-token "$token" --coordinator-secret-key "$secret" --local-trial --rate-limit 0 \
        --relay-fanout "$FANOUT" --probe-interval-secs 0 --log-format json \
        --http-max-connections 100000 --http-max-connections-per-client 100000 \
        2>"$work/coordinator-$3.log" &
    pids+=($!)
    coordinator_pids+=($!)
}
if [ "$REPLICAS" = 2 ]; then
    psql -q "$PG_URL/postgres" -c "CREATE DATABASE $db_name"
    start_coordinator "127.0.0.1:$((COORD_PORT + 1))" "$PG_URL/$db_name" a
    until curl -sf "http://127.0.0.1:$((COORD_PORT + 1))/healthz" >/dev/null; do sleep 0.2; done
    start_coordinator "127.0.0.1:$((COORD_PORT + 2))" "$PG_URL/$db_name" b
    until curl -sf "http://127.0.0.1:$((COORD_PORT + 2))/healthz" >/dev/null; do sleep 0.2; done
    # A small round-robin proxy in front of the replicas.
    cat >"$work/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx.log warn;
events { worker_connections 16384; }
http {
    access_log off;
    client_body_temp_path $work/nginx-body;
    proxy_temp_path $work/nginx-proxy;
    upstream coordinators {
        server 127.0.0.1:$((COORD_PORT + 1));
        server 127.0.0.1:$((COORD_PORT + 2));
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$COORD_PORT;
        location / {
            proxy_pass http://coordinators;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
        }
    }
}
EOF
    nginx -c "$work/nginx.conf" -p "$work" 2>>"$work/nginx.log" &
    pids+=($!)
    proxy_pid=$!
else
    start_coordinator "127.0.0.1:$COORD_PORT" "sqlite://$work/c.db?synchronous=normal" a
fi
until curl -sf "$coord/healthz" >/dev/null; do sleep 0.2; done
public=$(curl -sf "$coord/coordinator" | jq -r .coordinator_key)
key=$(curl -sf -X POST -H "authorization: Bearer $token" -H 'content-type: application/json' \
    -d '{"id":"show","title":"scale"}' "$coord/streams" | jq -r .stream_key)

"$BIN/streamr-node" --rtmp-listen "127.0.0.1:$ORIGIN_RTMP" --http-listen "127.0.0.1:$ORIGIN_HTTP" \
    --coordinator "$coord" --coordinator-public-key "$public" --identity "$work/origin.key" \
    --log-format json 2>"$work/origin.log" &
pids+=($!)
origin_pid=$!
sleep 1
"$BIN/streamr-load" publish "$SAMPLE" "rtmp://127.0.0.1:$ORIGIN_RTMP/live/show?key=$key" \
    </dev/null 2>"$work/publisher.log" &
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
until [ "$(active_relays)" -ge "$RELAYS" ] 2>/dev/null; do sleep 0.5; done
echo "coordinator x$REPLICAS, origin and $RELAYS relays up" >&2

# Grant URLs the coordinator hands out (each for a fresh viewer key), one list per node.
grants=$((RELAYS * 2))
for _ in $(seq 1 "$grants"); do
    viewer=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
    curl -sf "$coord/streams/show/play?viewer=$viewer" | jq -r '"\(.node_id) \(.rtmp_url)"' || true
done >"$work/grants.txt"
awk '!seen[$1]++' "$work/grants.txt" >"$work/grant-per-node.txt"
echo "$(wc -l <"$work/grants.txt") grants on $(wc -l <"$work/grant-per-node.txt") nodes; warming the tree" >&2

# One player per node for a few seconds: every node that will serve asks for its place.
cut -d' ' -f2 "$work/grant-per-node.txt" >"$work/warm.urls"
"$BIN/streamr-load" play "@$work/warm.urls" -n "$(wc -l <"$work/warm.urls")" --ramp 50 \
    --duration 12s --no-progress --json "$work/warm.json" 2>/dev/null || true

origin_id=$(curl -sf "$coord/streams/show" | jq -r .origin_node)
# Tier of every relay in the tree (1: under the origin).
sql "WITH RECURSIVE d(node, depth) AS (
    SELECT node_id, 1 FROM relay_assignments WHERE stream_id = 'show' AND parent_id = '$origin_id'
    UNION ALL SELECT r.node_id, d.depth + 1 FROM relay_assignments r JOIN d ON r.parent_id = d.node
    WHERE r.stream_id = 'show' AND d.depth < 16) SELECT node || '|' || depth FROM d;" |
    tr '|' ' ' >"$work/tiers.txt"
# The victim: the inner relay with the most children, deepest subtree first.
victim=$(sql "SELECT parent_id FROM relay_assignments WHERE stream_id = 'show' AND parent_id != '$origin_id'
    GROUP BY parent_id ORDER BY COUNT(*) DESC, parent_id LIMIT 1;")
sql "WITH RECURSIVE s(node) AS (
    SELECT node_id FROM relay_assignments WHERE stream_id = 'show' AND parent_id = '$victim'
    UNION ALL SELECT r.node_id FROM relay_assignments r JOIN s ON r.parent_id = s.node
    WHERE r.stream_id = 'show') SELECT node FROM s;" >"$work/subtree.txt"
children=$(sql "SELECT node_id FROM relay_assignments WHERE stream_id = 'show' AND parent_id = '$victim';")

# Viewer groups: one per tier (the victim's subtree and the victim left out), one for the
# victim's subtree. Players are shared out in proportion to the nodes in each group.
max_tier=$(awk '{ if ($2 > m) m = $2 } END { print m + 0 }' "$work/tiers.txt")
groups=()
for t in $(seq 1 "$max_tier"); do
    awk -v t="$t" -v victim="$victim" 'NR == FNR { if ($2 == t) tier[$1] = 1; next }
        FILENAME ~ /subtree/ { sub_[$1] = 1; next }
        ($1 in tier) && !($1 in sub_) && $1 != victim { print $2 }' \
        "$work/tiers.txt" "$work/subtree.txt" "$work/grant-per-node.txt" >"$work/tier$t.urls"
    [ -s "$work/tier$t.urls" ] && groups+=("tier$t")
done
awk 'NR == FNR { sub_[$1] = 1; next } ($1 in sub_) { print $2 }' \
    "$work/subtree.txt" "$work/grant-per-node.txt" >"$work/subtree.urls"
[ -s "$work/subtree.urls" ] && groups+=(subtree)
urls_total=$(for g in "${groups[@]}"; do cat "$work/$g.urls"; done | wc -l)
echo "tiers: $max_tier; victim ${victim:0:8} with $(wc -w <<<"$children") children, $(wc -l <"$work/subtree.txt") relays below; viewer groups: ${groups[*]}" >&2

started=$(ms)
for g in "${groups[@]}"; do
    n=$(($(wc -l <"$work/$g.urls") * LOAD_VIEWERS / urls_total))
    [ "$n" -lt "$(wc -l <"$work/$g.urls")" ] && n=$(wc -l <"$work/$g.urls")
    echo "$n" >"$work/$g.players"
    "$BIN/streamr-load" play "@$work/$g.urls" -n "$n" --ramp 200 --duration "${DURATION}s" \
        --no-progress --json "$work/$g.json" 2>"$work/$g.log" &
    pids+=($!)
done
for w in $(seq 1 "$WATCHERS"); do
    "$BIN/streamr" watch show --coordinator "$coord" --duration "$DURATION" 2>"$work/w$w.log" &
    pids+=($!)
    sleep 0.05
done

replica_report=""
if [ "$REPLICAS" = 2 ] && [ -n "$KILL_REPLICA" ]; then
    # Grants through the proxy all along, each answered session id kept.
    touch "$work/grant-prober.on" "$work/prober-sessions.txt"
    (
        while [ -e "$work/grant-prober.on" ]; do
            viewer=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
            curl -s -m 2 "$coord/streams/show/play?viewer=$viewer" | jq -r '.grant.body.session_id // empty' \
                >>"$work/prober-sessions.txt" 2>/dev/null || true
            sleep 0.05
        done
    ) &
    pids+=($!)
    sleep $((DURATION / 4))
    replica_b=${coordinator_pids[1]}
    disown "$replica_b"
    kill -9 "$replica_b"
    replica_killed=$(ms)
    sleep $((DURATION / 2 - DURATION / 4))
else
    sleep $((DURATION / 2))
fi
origin_pulls=$(($(ss -Htn state established "( sport = :$ORIGIN_RTMP )" | wc -l) - 1)) # less the publisher
relaying=$(curl -sf "$coord/nodes" | jq '[.[] | select(.streams_json | contains("show"))] | length')
depths=$(awk '{ n[$2]++ } END { for (t in n) printf "%s:%s ", t, n[t] }' "$work/tiers.txt")
per_process() { # pids, comma-separated → "RSS MiB, CPU %" averaged per process
    ps -o rss=,pcpu= -p "$1" | awk '{ rss += $1; cpu += $2; n++ }
        END { if (n) printf "%.1f MiB RSS, %.1f %% CPU (n=%d)", rss / n / 1024, cpu / n, n }'
}
relay_usage=$(per_process "$(echo "${relay_pid[@]}" | tr ' ' ',')")
origin_usage=$(per_process "$origin_pid")
coordinator_usage=$(per_process "$(echo "${coordinator_pids[@]}" | tr ' ' ',')")
load_mid=$(cut -d' ' -f1-3 /proc/loadavg)

victim_ip=$(curl -sf "$coord/nodes/$victim" | jq -r .rtmp_url | sed -E 's#rtmp://([^:/]+).*#\1#')
disown "${relay_pid[$victim_ip]}" # no job notice on stderr
kill -9 "${relay_pid[$victim_ip]}"
killed=$(ms)
reparented=""
for _ in $(seq 1 1200); do
    left=$(sql "SELECT COUNT(*) FROM relay_assignments WHERE stream_id = 'show' AND parent_id = '$victim';")
    if [ "$left" -eq 0 ]; then reparented=$(($(ms) - killed)); break; fi
    sleep 0.05
done
new_parents=$(sql "SELECT parent_id FROM relay_assignments WHERE stream_id = 'show' AND node_id IN
    ($(printf "'%s'," $children | sed 's/,$//'));" | sort | uniq -c | awk '{ printf "%s%s x%s", sep, substr($2, 1, 8), $1; sep = ", " }')
new_parents=${new_parents//${origin_id:0:8}/origin}
sleep 5
origin_pulls_late=$(($(ss -Htn state established "( sport = :$ORIGIN_RTMP )" | wc -l) - 1))

wait_until=$((started + DURATION * 1000 + 20000))
while [ "$(ms)" -lt "$wait_until" ] && pgrep -f "streamr watch show --coordinator $coord" >/dev/null; do
    sleep 1
done
if [ -n "${replica_killed:-}" ]; then
    rm -f "$work/grant-prober.on"
    sleep 3
    answered=$(sort -u "$work/prober-sessions.txt" | grep -c . || true)
    stored=$({
        echo "CREATE TEMP TABLE answered (id TEXT); COPY answered FROM STDIN;"
        sort -u "$work/prober-sessions.txt" | grep . || true
        printf '%s\n' '\.' "SELECT COUNT(*) FROM answered JOIN sessions ON session_id = id;"
    } | psql -qAt "$PG_URL/$db_name")
    seg=$(sql "SELECT MIN(sequence) || '|' || MAX(sequence) || '|' || COUNT(DISTINCT sequence) FROM segments WHERE stream_id = 'show';")
    IFS='|' read -r seg_min seg_max seg_count <<<"$seg"
    gaps=$((seg_max - seg_min + 1 - seg_count))
    replica_report="coordinator replica b killed with SIGKILL $((replica_killed - started)) ms into the viewing: grants answered through the proxy $answered, of which missing from the database $((answered - stored)); origin segment reports $seg_min..$seg_max stored with $gaps gaps; replica a alone served the rest"
fi
for g in "${groups[@]}"; do
    while [ ! -s "$work/$g.json" ] && [ "$(ms)" -lt "$wait_until" ]; do sleep 1; done
done
verified=0 unverified=0 failovers=0 failed=0
for w in $(seq 1 "$WATCHERS"); do
    line=$(grep -E '^node ' "$work/w$w.log" | tail -1 || true)
    if [ -z "$line" ]; then failed=$((failed + 1)); continue; fi
    verified=$((verified + $(sed -E 's/.*\(([0-9]+) verified.*/\1/' <<<"$line")))
    unverified=$((unverified + $(sed -E 's/.* ([0-9]+) unverified.*/\1/' <<<"$line")))
    failovers=$((failovers + $(sed -E 's/.*failovers ([0-9]+).*/\1/' <<<"$line")))
done

echo "relays: $RELAYS, coordinator replicas: $REPLICAS, fan-out k: $FANOUT, binaries: $PROFILE, load average mid-run: $load_mid, at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "origin egress: $origin_pulls RTMP pulls at the origin halfway, $origin_pulls_late 5 s after the kill (flat topology: $relaying, one per relaying friend)"
echo "tree (tier:relays): $depths"
echo "killed inner relay ${victim:0:8} with $(wc -w <<<"$children") children ($(wc -l <"$work/subtree.txt") relays in its subtree): all re-parented in the coordinator's tree after ${reparented:-more than 60 000} ms, under $new_parents"
previous=""
for g in "${groups[@]}"; do
    [ -s "$work/$g.json" ] || { echo "$g: no report"; continue; }
    jq -r --arg g "$g" --arg prev "$previous" --arg n "$(cat "$work/$g.players")" \
        --arg nodes "$(wc -l <"$work/$g.urls")" '
        "\($g): \($n) players on \($nodes) nodes, \(.max_playing) playing at most, \(.failed) failed, \(.never_started) never started; " +
        "hop latency p50 \(.latency_ms.p50 // "-" | tostring | .[0:6]) ms, p95 \(.latency_ms.p95 // "-" | tostring | .[0:6]) ms" +
        (if ($g | startswith("tier")) and $prev != "" and .latency_ms != null then " (p50 +\((.latency_ms.p50 - ($prev | tonumber)) | tostring | .[0:6]) ms on the tier above)" else "" end) +
        "; longest frozen picture p50 \(.longest_gap_ms.p50 // "-" | tostring | .[0:6]) ms, p95 \(.longest_gap_ms.p95 // "-" | tostring | .[0:6]) ms, max \(.longest_gap_max_ms // "-" | tostring | .[0:6]) ms; stalled share \(.stalled_share | tostring | .[0:6])"' \
        "$work/$g.json"
    if [[ "$g" == tier* ]]; then previous=$(jq -r '.latency_ms.p50 // ""' "$work/$g.json"); fi
done
echo "verifying viewers: $verified segments verified against the origin's hashes, $unverified unverified, $failovers fail-overs, $failed without a report"
[ -n "$replica_report" ] && echo "$replica_report"
echo "per relay process (mid-run, CPU averaged over each process's life): $relay_usage; origin: $origin_usage; coordinator: $coordinator_usage"
