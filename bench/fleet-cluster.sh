#!/usr/bin/env bash
# A fleet on a 3-node NATS cluster with the stream at 3 replicas, one node killed (kill -9)
# while frames are published and ingested: every frame is stored once (docs/fleet.md, "A
# cluster").
#
#   bench/fleet-cluster.sh                      # 500 meters × 100 frames, 2 workers
#   METERS=200 COUNT=50 bench/fleet-cluster.sh
#   KILL=leader bench/fleet-cluster.sh          # kill the stream's leader (default), or n1, n2, n3
#
# Three nats-servers on free loopback ports (client and cluster ports), JetStream in a
# temporary directory each; the stream SMARTY_RAW made at 3 replicas; `smarty simulate` and
# two `smarty fleet ingest` workers connected to all three (a comma-separated URL). Once a
# third of the frames is in the stream, one server is killed with SIGKILL; it is started
# again after the frames are all in. The run passes when the database holds every frame once
# (readings = meters × count) and the stream holds each once. Its own database on PGURL
# (default postgres://postgres@127.0.0.1:5432), removed at the end with everything else.
# Needs: cargo, nats-server 2.9+, psql, createdb, dropdb, python3.
set -euo pipefail
cd "$(dirname "$0")/.."

METERS=${METERS:-500}
COUNT=${COUNT:-100}
KILL=${KILL:-leader}
PGURL=${PGURL:-postgres://postgres@127.0.0.1:5432}
MASTER=000102030405060708090A0B0C0D0E0F
NATS_SERVER=$(command -v /usr/sbin/nats-server || command -v nats-server)

cargo build --release -p smarty --bin smarty --quiet
cargo build --release -p smarty-fleet --example fleet_bench --quiet
SMARTY=$PWD/target/release/smarty
BENCH=$PWD/target/release/examples/fleet_bench
WORK=$(mktemp -d)
DB=smarty_fleet_cluster_$$
declare -A NODE_PID
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}" "${NODE_PID[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    dropdb --if-exists --maintenance-db="$PGURL/postgres" "$DB" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
pg() { psql -X -q -A -t -d "$PGURL/$DB" -c "$1"; }
# Six free loopback ports: a client and a cluster port per node.
read -r -a P <<< "$(python3 -c '
import socket
ss = [socket.socket() for _ in range(6)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))')"
ROUTES="nats-route://127.0.0.1:${P[3]},nats-route://127.0.0.1:${P[4]},nats-route://127.0.0.1:${P[5]}"
NATS="nats://127.0.0.1:${P[0]},nats://127.0.0.1:${P[1]},nats://127.0.0.1:${P[2]}"
start_node() { # start_node N (1..3)
    local n=$1 i=$(($1 - 1))
    "$NATS_SERVER" -c "$WORK/n$n.conf" 2>> "$WORK/n$n.log" &
    NODE_PID[n$n]=$!
}
for n in 1 2 3; do
    i=$((n - 1))
    mkdir -p "$WORK/n$n"
    cat > "$WORK/n$n.conf" <<EOF
server_name: n$n
listen: "127.0.0.1:${P[$i]}"
jetstream { store_dir: "$WORK/n$n", max_file_store: 4GB, max_memory_store: 64MB }
cluster {
  name: fleet
  listen: "127.0.0.1:${P[$((i + 3))]}"
  routes: [ $ROUTES ]
}
EOF
    start_node "$n"
done
# The cluster is up once the stream can be made at 3 replicas (JetStream's meta leader elected).
for _ in $(seq 300); do
    "$BENCH" stream "$NATS" 3 > "$WORK/stream.txt" 2>/dev/null && break
    sleep 0.1
done
grep -q "replicas 3" "$WORK/stream.txt" || { echo "no stream at 3 replicas:"; "$BENCH" stream "$NATS" 3 || true; for f in "$WORK"/n*.log; do tail -n 5 "$f"; done; exit 1; }
echo "cluster: n1 ${P[0]}, n2 ${P[1]}, n3 ${P[2]}; stream SMARTY_RAW, leader and replicas: $("$BENCH" leader "$NATS")"

FRAMES=$((METERS * COUNT))
createdb --maintenance-db="$PGURL/postgres" "$DB"
"$SMARTY" simulate --meters "$METERS" --keys-out "$WORK/keys.csv" 2>/dev/null
SMARTY_MASTER_KEY=$MASTER "$SMARTY" fleet keys import "$WORK/keys.csv" --database "$PGURL/$DB" >/dev/null 2>&1
for i in 1 2; do
    SMARTY_MASTER_KEY=$MASTER RUST_LOG=smarty=info "$SMARTY" fleet ingest --nats "$NATS" \
        --database "$PGURL/$DB" --ack-wait-s 5 2> "$WORK/ingest-$i.log" &
    PIDS+=($!)
done
started=$(date +%s.%N)
"$SMARTY" simulate --keys "$WORK/keys.csv" --nats "$NATS" --count "$COUNT" --fast 2> "$WORK/simulate.log" &
SIM=$!
PIDS+=("$SIM")

# Kill a node once a third of the frames is in.
for _ in $(seq 600); do
    n=$("$BENCH" count "$NATS" 2>/dev/null || echo 0)
    [ "$n" -ge $((FRAMES / 3)) ] && break
    sleep 0.05
done
if [ "$KILL" = leader ]; then
    VICTIM=$("$BENCH" leader "$NATS" | cut -d' ' -f1)
else
    VICTIM=$KILL
fi
kill -9 "${NODE_PID[$VICTIM]}"
wait "${NODE_PID[$VICTIM]}" 2>/dev/null || true
echo "killed $VICTIM (kill -9) with $n of $FRAMES frames in the stream, $(pg 'SELECT count(*) FROM reading') stored"
wait "$SIM" || { echo "simulate failed:"; tail -5 "$WORK/simulate.log"; exit 1; }
echo "simulate: $(grep -o 'smarty simulate:.*' "$WORK/simulate.log" | tail -1)"
echo "after the kill: stream leader and replicas: $("$BENCH" leader "$NATS")"
start_node "${VICTIM#n}"
# Every frame stored, within 3 minutes.
for _ in $(seq 1800); do
    STORED=$(pg 'SELECT count(*) FROM reading')
    [ "$STORED" -ge "$FRAMES" ] && break
    sleep 0.1
done
done_at=$(date +%s.%N)
IN_STREAM=$("$BENCH" count "$NATS")
for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
wait "${PIDS[@]}" 2>/dev/null || true
PER_METER=$(pg 'SELECT count(DISTINCT n) FROM (SELECT count(*) AS n FROM reading GROUP BY meter) c')
PER_METER_N=$(pg 'SELECT min(n) FROM (SELECT count(*) AS n FROM reading GROUP BY meter) c')
echo "stored $STORED readings of $FRAMES frames ($PER_METER_N per meter, all meters alike: $([ "$PER_METER" = 1 ] && echo yes || echo no)); stream holds $IN_STREAM; $(python3 -c "print(f'{$done_at - $started:.1f}')") s from the first frame to the last stored"
for i in 1 2; do
    echo "worker $i: $(grep -o 'fleet: stopped after.*' "$WORK/ingest-$i.log" || tail -n 2 "$WORK/ingest-$i.log")"
    { grep -c 'NATS: disconnected' "$WORK/ingest-$i.log" || true; } | sed "s/^/worker $i: NATS disconnections: /"
done
if [ "$STORED" = "$FRAMES" ] && [ "$IN_STREAM" = "$FRAMES" ] && [ "$PER_METER" = 1 ]; then
    echo "PASS: every frame stored once with $VICTIM killed"
else
    echo "FAIL"
    exit 1
fi
