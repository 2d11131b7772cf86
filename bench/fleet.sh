#!/usr/bin/env bash
# Speed of the fleet (docs/performance.md, "The fleet"): virtual meters → NATS JetStream →
# 1, then 2 `smarty fleet ingest` workers → PostgreSQL, end to end, beside the limits of the
# parts measured in the same run on the same frames and rows:
#
#   publish    `smarty simulate --keys … --nats … --fast` fills the stream (frames/s)
#   consume    JetStream alone: ephemeral pull consumers, one per partition (each with the
#              partition's filter, all at once), fetching and acknowledging every frame as the
#              workers do, without decoding or storing
#              (crates/smarty-fleet/examples/fleet_bench.rs consume)
#   ingest     W workers drain the filled stream into a fresh database: frames/s from their
#              start to the last batch's commit (the store's debug log `store: batch
#              committed … readings=N commit_ms=`, each line stamped as it comes; its acks
#              follow at once, and JetStream is asked once after it that every frame was
#              acknowledged), and each batch's commit latency
#   copy       PostgreSQL alone: the readings the workers stored, exported with COPY and
#              copied back (binary COPY) into the emptied `reading` table — same partitions,
#              indexes and keys
#
#   bench/fleet.sh                               # 1,000 meters × 300 frames, 1 then 2 workers
#   METERS=200 COUNT=100 bench/fleet.sh          # to try the script
#   WORKERS="1 2 4" bench/fleet.sh
#   INGEST_FLAGS="--batch 5000" bench/fleet.sh   # extra flags of every `smarty fleet ingest`
#   PARTITIONS=4 bench/fleet.sh                  # partitions of the server's mapping (default 1)
#   DB_SETTINGS="synchronous_commit=off" bench/fleet.sh  # ALTER DATABASE … SET, to find where time goes
#   PERF=/tmp/perf bench/fleet.sh                # perf record -g of each worker into that directory
#   LOGS=/tmp/logs RUST_LOG=smarty_fleet=trace bench/fleet.sh   # keep the servers' and workers' logs
#
# Each run starts its own nats-server (JetStream in a temporary directory, port of the
# system's choice) and makes its own databases smarty_fleet_bench_<pid>_w<W> on PGURL (an
# administrator who may create databases; default postgres://postgres@127.0.0.1:5432); all are
# removed at the end. Needs: cargo, nats-server (Debian's /usr/sbin/nats-server or on PATH),
# psql, createdb, dropdb, python3.
set -euo pipefail
cd "$(dirname "$0")/.."

METERS=${METERS:-1000}
COUNT=${COUNT:-300}
WORKERS=${WORKERS:-1 2}
INGEST_FLAGS=${INGEST_FLAGS:-}
PARTITIONS=${PARTITIONS:-1}
DB_SETTINGS=${DB_SETTINGS:-}
CONSUME_BATCH=${CONSUME_BATCH:-2000}
PGURL=${PGURL:-postgres://postgres@127.0.0.1:5432}
MASTER=000102030405060708090A0B0C0D0E0F
NATS_SERVER=$(command -v /usr/sbin/nats-server || command -v nats-server)

cargo build --release -p smarty --bin smarty --quiet
cargo build --release -p smarty-fleet --example fleet_bench --quiet
SMARTY=$PWD/target/release/smarty
BENCH=$PWD/target/release/examples/fleet_bench
WORK=$(mktemp -d)
DATABASES=()
PIDS=()
cleanup() {
    if [ -n "${LOGS:-}" ]; then mkdir -p "$LOGS" && cp "$WORK"/*.log "$LOGS"/ 2>/dev/null || true; fi
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    for db in "${DATABASES[@]}"; do
        dropdb --if-exists --maintenance-db="$PGURL/postgres" "$db" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
pg() { psql -X -q -A -t -d "$1" -c "$2"; } # pg URL QUERY
now() { date +%s.%N; }
rate() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):,.0f}')" "$@"; }
# CPU time (clock ticks, user + system) of processes: the live ones, and for PostgreSQL the
# exited backends too (reaped by the postmaster: its children's time).
ticks() { # ticks PID… (live processes; a gone one counts 0)
    local sum=0 pid f
    for pid in "$@"; do
        f=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
        f=${f##*) }
        # shellcheck disable=SC2086 # the fields of /proc/PID/stat after the command
        set -- $f
        sum=$((sum + ${12} + ${13}))
    done
    echo "$sum"
}
pg_ticks() { # every postgres process, and the postmaster's reaped children
    local master f
    master=$(pgrep -o -x postgres || true)
    [ -n "$master" ] || { echo 0; return; }
    f=$(cat "/proc/$master/stat"); f=${f##*) }
    # shellcheck disable=SC2086
    set -- $f
    echo $(( $(ticks $(pgrep -x postgres)) + ${14} + ${15} ))
}
machine_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat; } # busy ticks, all cores
HZ=$(getconf CLK_TCK)
# Each line of standard input with the seconds since the epoch in front (the worker's log
# lines carry no time).
stamp() { python3 -u -c '
import sys, time
for line in sys.stdin:
    sys.stdout.write(f"{time.time():.3f} {line}")
'; }
# "A µs of CPU per frame": cpu_per TICKS FRAMES
cpu_per() { python3 -c "import sys; print(f'{1e6 * int(sys.argv[1]) / $HZ / int(sys.argv[2]):.1f}')" "$1" "$2"; }

# The machine and the servers.
FRAMES=$((METERS * COUNT))
echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(free -g | awk '/Mem:/ {print $2}') GB; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "nats-server $("$NATS_SERVER" --version | awk '{print $NF}'); $(pg "$PGURL/postgres" 'SELECT version()' | cut -d' ' -f1-2);" \
    "shared_buffers $(pg "$PGURL/postgres" 'SHOW shared_buffers'), synchronous_commit $(pg "$PGURL/postgres" 'SHOW synchronous_commit')"
echo "$METERS meters × $COUNT frames = $FRAMES frames; partitions: $PARTITIONS; ingest flags: ${INGEST_FLAGS:-(none)}; database settings: ${DB_SETTINGS:-(server defaults)}"

# nats-server with JetStream on a port of its choice.
cat > "$WORK/nats.conf" <<EOF
server_name: fleet-bench
listen: "127.0.0.1:-1"
jetstream { store_dir: "$WORK/jetstream", max_file_store: 20GB, max_memory_store: 256MB }
EOF
if [ "$PARTITIONS" -gt 1 ]; then
    # Each meter's subject to one of the partitions the workers share (docs/fleet.md).
    echo "mappings { \"smarty.raw.*\": \"smarty.raw.{{partition($PARTITIONS,1)}}.{{wildcard(1)}}\" }" >> "$WORK/nats.conf"
fi
"$NATS_SERVER" -c "$WORK/nats.conf" 2> "$WORK/nats.log" &
NATS_PID=$!
PIDS+=($!)
for _ in $(seq 100); do
    grep -q "Server is ready" "$WORK/nats.log" && break
    sleep 0.1
done
PORT=$(sed -n 's/.*Listening for client connections on [0-9.]*:\([0-9]*\).*/\1/p' "$WORK/nats.log" | head -1)
[ -n "$PORT" ] || { cat "$WORK/nats.log"; exit 1; }
NATS=nats://127.0.0.1:$PORT

# The meters, and their frames in the stream.
"$SMARTY" simulate --meters "$METERS" --keys-out "$WORK/keys.csv" 2>/dev/null
t0=$(now)
"$SMARTY" simulate --keys "$WORK/keys.csv" --nats "$NATS" --count "$COUNT" --fast 2> "$WORK/simulate.log"
t1=$(now)
PUBLISH_S=$(python3 -c "print(f'{$t1 - $t0:.2f}')")
BYTES=$("$BENCH" count "$NATS")
[ "$BYTES" = "$FRAMES" ] || { echo "the stream holds $BYTES frames, not $FRAMES"; exit 1; }
echo "publish: $FRAMES frames in $PUBLISH_S s = $(rate "$FRAMES" "$PUBLISH_S") frames/s"

# JetStream alone.
N0=$(ticks "$NATS_PID")
M0=$(machine_ticks)
CONSUME=$("$BENCH" consume "$NATS" "$FRAMES" "$CONSUME_BATCH" "$PARTITIONS")
CONSUME_NATS_US=$(cpu_per $(($(ticks "$NATS_PID") - N0)) "$FRAMES")
CONSUME_ALL_US=$(cpu_per $(($(machine_ticks) - M0)) "$FRAMES")
echo "$CONSUME; CPU per frame: nats-server $CONSUME_NATS_US µs, the whole machine $CONSUME_ALL_US µs"
CONSUME_RATE=$(sed -n 's/.*= \([0-9]*\) frames\/s/\1/p' <<< "$CONSUME")
"$BENCH" rmconsumers "$NATS"

# The workers.
declare -A E2E CPU
LAST_DB=
for W in $WORKERS; do
    DB=smarty_fleet_bench_$$_w$W
    DATABASES+=("$DB")
    createdb --maintenance-db="$PGURL/postgres" "$DB"
    URL=$PGURL/$DB
    for setting in $DB_SETTINGS; do
        pg "$PGURL/postgres" "ALTER DATABASE $DB SET ${setting%%=*} = '${setting#*=}'"
    done
    SMARTY_MASTER_KEY=$MASTER "$SMARTY" fleet keys import "$WORK/keys.csv" --database "$URL" >/dev/null 2>&1
    "$BENCH" rmconsumers "$NATS"
    WORKER_PIDS=()
    N0=$(ticks "$NATS_PID")
    P0=$(pg_ticks)
    M0=$(machine_ticks)
    T_START=$(now)
    for i in $(seq "$W"); do
        # shellcheck disable=SC2086 # INGEST_FLAGS are words
        WRAP=()
        if [ -n "${PERF:-}" ]; then
            mkdir -p "$PERF"
            WRAP=(perf record -F 999 -g -o "$PERF/ingest-w$W-$i.data" --)
        fi
        SMARTY_MASTER_KEY=$MASTER RUST_LOG=smarty=info,smarty_store::writer=debug${RUST_LOG:+,$RUST_LOG} \
            "${WRAP[@]}" "$SMARTY" fleet ingest --nats "$NATS" --database "$URL" --partitions "$PARTITIONS" $INGEST_FLAGS \
            2> >(stamp > "$WORK/ingest-w$W-$i.log") &
        WORKER_PIDS+=($!)
        PIDS+=($!)
    done
    # Drained: every frame in a committed batch (the workers' log; asking JetStream for the
    # consumers' pending counts while they run would stall a partitioned stream's server),
    # then checked once with JetStream: all acknowledged, nothing pending.
    DEADLINE=$(( $(date +%s) + 1200 ))
    until [ "$(cat "$WORK"/ingest-w"$W"-*.log | sed -n 's/.*batch committed readings=\([0-9]*\).*/\1/p' | awk '{s += $1} END {print s + 0}')" = "$FRAMES" ]; do
        [ "$(date +%s)" -lt "$DEADLINE" ] || { echo "not drained in 1200 s"; tail -5 "$WORK"/ingest-w"$W"-*.log; exit 1; }
        sleep 0.1
    done
    "$BENCH" drained "$NATS" "$FRAMES" 60 > /dev/null
    LAST_COMMIT=$(cat "$WORK"/ingest-w"$W"-*.log | grep "batch committed" | cut -d' ' -f1 | sort -n | tail -1)
    SECONDS_TAKEN=$(python3 -c "print(f'{$LAST_COMMIT - $T_START:.3f}')")
    # The workers' own time (with perf, its child); the rest, the servers'.
    WT=$(ticks "${WORKER_PIDS[@]}" $(pgrep -P "$(echo "${WORKER_PIDS[@]}" | tr ' ' ,)" 2>/dev/null || true))
    NT=$(($(ticks "$NATS_PID") - N0))
    PT=$(($(pg_ticks) - P0))
    MT=$(($(machine_ticks) - M0))
    CPU[$W]="CPU per frame: workers $(cpu_per "$WT" "$FRAMES") µs, nats-server $(cpu_per "$NT" "$FRAMES") µs, PostgreSQL $(cpu_per "$PT" "$FRAMES") µs, the whole machine $(cpu_per "$MT" "$FRAMES") µs ($(python3 -c "print(f'{100 * $MT / $HZ / $(nproc) / $SECONDS_TAKEN:.0f}')") % of its cores busy)"
    kill -TERM "${WORKER_PIDS[@]}"
    wait "${WORKER_PIDS[@]}" 2>/dev/null || true
    STORED=$(pg "$URL" 'SELECT count(*) FROM reading')
    [ "$STORED" = "$FRAMES" ] || { echo "$W workers stored $STORED readings, not $FRAMES"; tail -5 "$WORK"/ingest-w"$W"-*.log; exit 1; }
    E2E[$W]=$(python3 -c "print(f'{$FRAMES / $SECONDS_TAKEN:.0f}')")
    # Commit latency and batch sizes from the store's debug lines.
    LATENCY=$(cat "$WORK"/ingest-w"$W"-*.log | python3 -c '
import re, sys, statistics
ms, rows = [], []
for line in sys.stdin:
    if "batch committed" not in line:
        continue
    m = re.search(r"commit_ms=([0-9.]+)", line); r = re.search(r"readings=([0-9]+)", line)
    if m and r:
        ms.append(float(m.group(1))); rows.append(int(r.group(1)))
ms.sort()
q = lambda p: ms[min(len(ms) - 1, int(p * len(ms)))]
print(f"{len(ms)} batches of {statistics.mean(rows):.0f} readings on average; commit p50 {q(0.5):.0f} ms, p95 {q(0.95):.0f} ms, max {ms[-1]:.0f} ms, {sum(ms) / 1000:.1f} s in all")
')
    echo "ingest, $W worker(s): $FRAMES frames in $SECONDS_TAKEN s = ${E2E[$W]} frames/s end to end; $LATENCY"
    echo "ingest, $W worker(s): ${CPU[$W]}"
    LAST_DB=$URL
done

# PostgreSQL alone: the same readings, COPY out and binary COPY back into the emptied table.
pg "$LAST_DB" "\\copy (SELECT * FROM reading) TO '$WORK/readings.bin' (FORMAT binary)"
pg "$LAST_DB" 'TRUNCATE reading'
P0=$(pg_ticks)
t0=$(now)
pg "$LAST_DB" "\\copy reading FROM '$WORK/readings.bin' (FORMAT binary)"
t1=$(now)
COPY_PG_US=$(cpu_per $(($(pg_ticks) - P0)) "$FRAMES")
COPY_S=$(python3 -c "print(f'{$t1 - $t0:.2f}')")
COPY_RATE=$(python3 -c "print(f'{$FRAMES / ($t1 - $t0):.0f}')")
echo "copy: $FRAMES readings in $COPY_S s = $COPY_RATE rows/s (binary COPY into reading, $(du -h "$WORK/readings.bin" | cut -f1)); CPU per row: PostgreSQL $COPY_PG_US µs"

SLOWER=$(( CONSUME_RATE < COPY_RATE ? CONSUME_RATE : COPY_RATE ))
# Both parts on the same cores: JetStream's consume + ack and PostgreSQL's COPY of one frame,
# one after the other on every core the machine has (no decode, no rollups) — what this one
# machine can give end to end at most.
SHARED=$(python3 -c "print(f'{$(nproc) * 1e6 / ($CONSUME_ALL_US + $COPY_PG_US):.0f}')")
echo "the parts sharing this machine's $(nproc) cores: consume + ack $CONSUME_ALL_US µs + COPY $COPY_PG_US µs of CPU per frame = at most $SHARED frames/s"
for W in $WORKERS; do
    echo "summary: $W worker(s) ${E2E[$W]} frames/s = $(python3 -c "print(f'{100 * ${E2E[$W]} / $SLOWER:.0f}')") % of the slower part's limit ($SLOWER/s; consume $CONSUME_RATE/s, copy $COPY_RATE/s); $(python3 -c "print(f'{100 * ${E2E[$W]} / $SHARED:.0f}')") % of the parts sharing the machine ($SHARED/s); target ≥ 25,000 frames/s and ≥ 60 %"
done
