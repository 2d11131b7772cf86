#!/usr/bin/env bash
# Size and speed of the history store (docs/storage.md, "Size and speed"): a year of one
# Smarty meter at a telegram every 10 s (3,153,600 frames, with gas and water meters on
# M-Bus), simulated and imported twice: raw readings kept forever, and kept 90 days (the
# default). Reports the store's size (file + WAL), its rows, the import time and the time of
# the year-long daily export.
#
#   bench/store_size.sh                 # a year
#   COUNT=8640 bench/store_size.sh      # a day, to try the script
#
# Needs: cargo, bash 5, and sqlite3 (or python3) for the row counts.
set -euo pipefail
cd "$(dirname "$0")/.."

COUNT=${COUNT:-3153600}
KEY=000102030405060708090A0B0C0D0E0F
cargo build --release -p smarty --quiet
SMARTY=$PWD/target/release/smarty
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# The year ends now, so that the 90-day retention keeps its last 90 days.
END=$(date +%s)
START=$(( (END - COUNT * 10) / 10 * 10 ))

sql() { # sql DB QUERY
    if command -v sqlite3 >/dev/null; then
        sqlite3 "$1" "$2"
    else
        python3 -c 'import sqlite3,sys; [print("|".join(map(str,r))) for r in sqlite3.connect(sys.argv[1]).execute(sys.argv[2])]' "$1" "$2"
    fi
}

now() { echo "${EPOCHREALTIME/./}"; } # microseconds
seconds() { printf '%d.%d' $(( ($2 - $1) / 1000000 )) $(( ($2 - $1) % 1000000 / 100000 )); }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "frames: $COUNT every 10 s from $(date -d @"$START" -Iseconds)"

t0=$(now)
"$SMARTY" simulate --start "$START" --count "$COUNT" --fast -o /dev/null --key "$KEY" \
    --gas --water --seed 1 2>/dev/null
t1=$(now)
echo "simulate alone: $(seconds "$t0" "$t1") s"

for retention in 0 90; do
    db="$WORK/r$retention/smarty.db"
    mkdir -p "$WORK/r$retention"
    cat >"$WORK/r$retention/smarty.toml" <<EOF
[[meter]]
name = "home"
source = "-"
[store]
path = "$db"
raw_retention_days = $retention
EOF
    t0=$(now)
    "$SMARTY" simulate --start "$START" --count "$COUNT" --fast -o - --key "$KEY" \
        --gas --water --seed 1 2>/dev/null |
        "$SMARTY" import - --quiet --key "$KEY" --meter home --config "$WORK/r$retention/smarty.toml"
    t1=$(now)
    size=$(( $(stat -c %s "$db") + $( [ -f "$db-wal" ] && stat -c %s "$db-wal" || echo 0) ))
    label=$([ "$retention" = 0 ] && echo forever || echo "$retention days")
    echo "== raw readings kept $label"
    echo "simulate | import: $(seconds "$t0" "$t1") s"
    echo "size: $size bytes ($(( size / 1000000 )) MB), file + WAL after the import"
    echo "raw readings: $(sql "$db" 'SELECT COALESCE(SUM(n), 0) FROM raw_block') in $(sql "$db" 'SELECT COUNT(*) FROM raw_block') blocks"
    echo "15-minute rows: $(sql "$db" 'SELECT COUNT(*) FROM agg_15m'), days: $(sql "$db" 'SELECT COUNT(*) FROM agg_day'), M-Bus readings: $(sql "$db" 'SELECT COUNT(*) FROM mbus_reading')"
    if command -v sqlite3 >/dev/null && sqlite3 "$db" 'SELECT 1 FROM dbstat LIMIT 1' >/dev/null 2>&1; then
        echo "bytes by table:"
        sqlite3 "$db" "SELECT '  ' || name || ': ' || SUM(pgsize) FROM dbstat GROUP BY name ORDER BY SUM(pgsize) DESC LIMIT 6"
    fi
    echo "free pages: $(sql "$db" 'PRAGMA freelist_count') of $(sql "$db" 'PRAGMA page_count')"
    # The year-long daily series, through the whole command (process start, open, query,
    # JSON); the query alone is measured below (crates/smarty-store/examples/store_query_speed.rs).
    best=
    for _ in 1 2 3 4 5; do
        t0=$(now)
        "$SMARTY" export --db "$db" --resolution day --format json --from "$START" >/dev/null
        t1=$(now)
        us=$(( t1 - t0 ))
        if [ -z "$best" ] || [ "$us" -lt "$best" ]; then best=$us; fi
    done
    best=$(printf '%d.%d' $(( best / 1000 )) $(( best % 1000 / 100 )))
    echo "export --resolution day of the year (best of 5, whole process): $best ms"
    if [ "$retention" = 0 ]; then
        echo "series queries (best of 5, the query alone, crates/smarty-store/examples/store_query_speed.rs):"
        cargo run --release --quiet -p smarty-store --example store_query_speed -- "$db" \
            2>/dev/null | grep ' points in ' | sed 's/^/  /'
    fi
done
