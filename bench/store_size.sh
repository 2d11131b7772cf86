#!/usr/bin/env bash
# Size and speed of the history store (docs/storage.md, "Size and speed"), on SQLite and on
# PostgreSQL side by side: a year of one Smarty meter at a telegram every 10 s (3,153,600
# frames, with gas and water meters on M-Bus), simulated and imported into each backend
# twice: raw readings kept forever, and kept 90 days (the default). Reports the import time
# and rate, the store's size and rows, the time of the year-long daily export, the store's
# query times (crates/smarty-store/examples/store_query_speed.rs) and the API's
# (bench/dashboard.sh --store: the year-long daily series, the tariff report over a year of
# 15-minute intervals, …).
#
#   bench/store_size.sh                        # a year, both backends
#   COUNT=86400 bench/store_size.sh            # 10 days, to try the script
#   BACKENDS=sqlite bench/store_size.sh        # one backend (sqlite, postgres)
#
# Size: SQLite's is the file + WAL after the import. PostgreSQL's is the sum of
# pg_total_relation_size (heap, TOAST, free-space and visibility maps, indexes) over
# smarty's tables and the daily partitions of `reading`; the growth of pg_database_size over
# an empty database's (which also counts the catalog entries of the partitions) is shown
# beside it.
#
# PostgreSQL: PGURL is the server, as an administrator who may create databases (default
# postgres://postgres@127.0.0.1:5432). Each store is a fresh database smarty_bench_<pid>_r<days>,
# dropped at the end; the server's settings are printed first.
#
# Needs: cargo, bash 5, sqlite3 (or python3) for SQLite's row counts, psql, createdb and
# dropdb for PostgreSQL, and what bench/dashboard.sh needs for the API (curl, python3).
set -euo pipefail
cd "$(dirname "$0")/.."

COUNT=${COUNT:-3153600}
BACKENDS=${BACKENDS:-sqlite postgres}
PGURL=${PGURL:-postgres://postgres@127.0.0.1:5432}
KEY=000102030405060708090A0B0C0D0E0F
cargo build --release -p smarty --quiet
cargo build --release -p smarty-store --example store_query_speed --quiet
SMARTY=$PWD/target/release/smarty
QUERY_SPEED=$PWD/target/release/examples/store_query_speed
WORK=$(mktemp -d)
DATABASES=()
cleanup() {
    for db in "${DATABASES[@]}"; do
        dropdb --if-exists --maintenance-db="$PGURL/postgres" "$db" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

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
pg() { psql -X -q -A -t -d "$1" -c "$2"; } # pg URL QUERY

now() { echo "${EPOCHREALTIME/./}"; } # microseconds
seconds() { printf '%d.%d' $(( ($2 - $1) / 1000000 )) $(( ($2 - $1) % 1000000 / 100000 )); }
mb() { printf '%d.%d MB' $(( $1 / 1000000 )) $(( $1 % 1000000 / 100000 )); }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/^Mem:/ { print $2 }') GB, $(uname -r)"
echo "date: $(date -Iseconds), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "frames: $COUNT every 10 s from $(date -d @"$START" -Iseconds)"
case " $BACKENDS " in *" postgres "*)
    echo "PostgreSQL $(pg "$PGURL/postgres" 'SHOW server_version') at ${PGURL#*@}: $(pg "$PGURL/postgres" "SELECT string_agg(name || '=' || setting || COALESCE(unit, ''), ', ' ORDER BY name) FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes', 'wal_level', 'shared_buffers', 'work_mem', 'max_wal_size', 'checkpoint_timeout', 'autovacuum')")"
    empty=smarty_bench_$$_empty
    DATABASES+=("$empty")
    createdb --maintenance-db="$PGURL/postgres" "$empty"
    EMPTY_SIZE=$(pg "$PGURL/$empty" 'SELECT pg_database_size(current_database())')
    ;;
esac

t0=$(now)
"$SMARTY" simulate --start "$START" --count "$COUNT" --fast -o /dev/null --key "$KEY" \
    --gas --water --seed 1 2>/dev/null
t1=$(now)
echo "simulate alone: $(seconds "$t0" "$t1") s"

for backend in $BACKENDS; do
for retention in 0 90; do
    label=$([ "$retention" = 0 ] && echo forever || echo "$retention days")
    dir="$WORK/$backend-r$retention"
    mkdir -p "$dir"
    case $backend in
        sqlite)
            db="$dir/smarty.db"
            location=$db
            store="path = \"$db\""
            ;;
        postgres)
            db=smarty_bench_$$_r$retention
            DATABASES+=("$db")
            createdb --maintenance-db="$PGURL/postgres" "$db"
            location="$PGURL/$db"
            store="url = \"$location\""
            ;;
        *) echo "unknown backend $backend (sqlite, postgres)" >&2; exit 2 ;;
    esac
    cat >"$dir/smarty.toml" <<EOF
[[meter]]
name = "home"
source = "-"
[store]
$store
raw_retention_days = $retention
EOF
    t0=$(now)
    "$SMARTY" simulate --start "$START" --count "$COUNT" --fast -o - --key "$KEY" \
        --gas --water --seed 1 2>/dev/null |
        "$SMARTY" import - --quiet --key "$KEY" --meter home --config "$dir/smarty.toml"
    t1=$(now)
    echo "== $backend, raw readings kept $label"
    echo "simulate | import: $(seconds "$t0" "$t1") s, $(( COUNT * 1000000 / (t1 - t0) )) telegrams/s"
    case $backend in
    sqlite)
        size=$(( $(stat -c %s "$db") + $( [ -f "$db-wal" ] && stat -c %s "$db-wal" || echo 0) ))
        echo "size: $size bytes ($(mb "$size")), file + WAL after the import"
        echo "raw readings: $(sql "$db" 'SELECT COALESCE(SUM(n), 0) FROM raw_block') in $(sql "$db" 'SELECT COUNT(*) FROM raw_block') blocks"
        echo "15-minute rows: $(sql "$db" 'SELECT COUNT(*) FROM agg_15m'), days: $(sql "$db" 'SELECT COUNT(*) FROM agg_day'), M-Bus readings: $(sql "$db" 'SELECT COUNT(*) FROM mbus_reading')"
        if command -v sqlite3 >/dev/null && sqlite3 "$db" 'SELECT 1 FROM dbstat LIMIT 1' >/dev/null 2>&1; then
            echo "bytes by table:"
            sqlite3 "$db" "SELECT '  ' || name || ': ' || SUM(pgsize) FROM dbstat GROUP BY name ORDER BY SUM(pgsize) DESC LIMIT 6"
        fi
        echo "free pages: $(sql "$db" 'PRAGMA freelist_count') of $(sql "$db" 'PRAGMA page_count')"
        ;;
    postgres)
        size=$(pg "$location" "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r'")
        grown=$(( $(pg "$location" 'SELECT pg_database_size(current_database())') - EMPTY_SIZE ))
        echo "size: $size bytes ($(mb "$size")), sum of pg_total_relation_size over the tables and partitions after the import"
        echo "pg_database_size minus an empty database's: $grown bytes ($(mb "$grown"))"
        echo "raw readings: $(pg "$location" 'SELECT count(*) FROM reading') in $(pg "$location" "SELECT count(*) FROM pg_inherits WHERE inhparent = 'reading'::regclass") daily partitions"
        echo "15-minute rows: $(pg "$location" 'SELECT count(*) FROM agg_15m'), days: $(pg "$location" 'SELECT count(*) FROM agg_day'), M-Bus readings: $(pg "$location" 'SELECT count(*) FROM mbus_reading')"
        echo "bytes by table (table + indexes):"
        pg "$location" "SELECT '  ' || t || ': ' || sum(pg_table_size(r)) || ' + ' || sum(pg_indexes_size(r))
            FROM (SELECT 'reading' AS t, inhrelid AS r FROM pg_inherits WHERE inhparent = 'reading'::regclass
                  UNION ALL SELECT relname::text, oid FROM pg_class
                  WHERE relkind = 'r' AND relname IN ('agg_15m', 'agg_day', 'mbus_reading', 'mbus_channel', 'meter')) AS s
            GROUP BY t ORDER BY sum(pg_total_relation_size(r)) DESC"
        # Fresh statistics for the planner, as autovacuum would make them after a while.
        pg "$location" 'ANALYZE'
        ;;
    esac
    # The year-long daily series, through the whole command (process start, open, query,
    # JSON); the query alone is measured below (crates/smarty-store/examples/store_query_speed.rs).
    best=
    for _ in 1 2 3 4 5; do
        t0=$(now)
        "$SMARTY" export --database "$location" --resolution day --format json --from "$START" >/dev/null
        t1=$(now)
        us=$(( t1 - t0 ))
        if [ -z "$best" ] || [ "$us" -lt "$best" ]; then best=$us; fi
    done
    best=$(printf '%d.%d' $(( best / 1000 )) $(( best % 1000 / 100 )))
    echo "export --resolution day of the year (best of 5, whole process): $best ms"
    echo "store queries (best of 5, the query alone, crates/smarty-store/examples/store_query_speed.rs):"
    "$QUERY_SPEED" "$location" 2>/dev/null | grep ' points in ' | sed 's/^/  /'
    SMARTY_BIN=$SMARTY bench/dashboard.sh --store "$location" --meter home --retention "$retention" | sed 's/^/  /'
done
done
