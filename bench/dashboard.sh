#!/usr/bin/env bash
# The dashboard's first paint and the API's query times over a year of history, on SQLite and
# on PostgreSQL.
#
#   bench/dashboard.sh [DAYS]            (default 365)
#   bench/dashboard.sh --store LOCATION [--meter NAME] [--retention DAYS]
#
# Without --store: `smarty demo --history-days DAYS` fills a fresh SQLite store with the
# virtual meter's past (a telegram every 5 minutes, every minute in the last week, every 10 s
# in the last two days; 15-minute and daily aggregates for the whole period) and goes live at
# a telegram every 2 s. Then:
#   - the headless-Chromium test (crates/smarty/tests/browser/dashboard.mjs) loads the
#     dashboard and reports its first contentful paint (fcp_ms) among other timings;
#   - curl times the API calls the dashboard makes and the year-long ones (median of 20).
# Then the demo stops, `smarty store migrate` copies its history into a fresh PostgreSQL
# database, `smarty run` serves it, and curl times the same calls there (no live meter).
#
# With --store: `smarty run` serves an existing store (an SQLite file or a PostgreSQL URL, as
# `--database` takes it; bench/store_size.sh makes them) with the meter NAME (default home)
# and raw readings kept DAYS (default 0, forever: give the store's own, so that the service
# prunes nothing), and curl times the API calls (no live meter, no browser).
#
# PostgreSQL: PGURL is the server, as an administrator who may create databases (default
# postgres://postgres@127.0.0.1:5432); the database is made fresh and dropped at the end.
# BACKENDS="sqlite" skips PostgreSQL.
# Needs: a release build (made here unless SMARTY_BIN names one), Chromium and crates/smarty-web/static/node_modules
# (./scripts/test installs both), curl, psql and createdb/dropdb for PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."

store=
meter=home
retention=0
days=365
while [ $# -gt 0 ]; do
    case $1 in
        --store) store=$2; shift 2 ;;
        --meter) meter=$2; shift 2 ;;
        --retention) retention=$2; shift 2 ;;
        -*) echo "usage: bench/dashboard.sh [DAYS] | --store LOCATION [--meter NAME] [--retention DAYS]" >&2; exit 2 ;;
        *) days=$1; shift ;;
    esac
done
PGURL=${PGURL:-postgres://postgres@127.0.0.1:5432}
BACKENDS=${BACKENDS:-sqlite postgres}

# SMARTY_BIN: a smarty already built (bench/store_size.sh passes its own), else built here.
bin=${SMARTY_BIN:-}
if [ -z "$bin" ]; then
    cargo build --release -q -p smarty
    bin=$PWD/target/release/smarty
fi
dir=$(mktemp -d)
pids=()
pgdb=
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    if [ -n "$pgdb" ]; then dropdb --if-exists --maintenance-db="$PGURL/postgres" "$pgdb" 2>/dev/null || true; fi
    rm -rf "$dir"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_http PID LOG URL: until URL answers, or the process is gone.
wait_http() {
    until curl -sf "$3" >/dev/null; do
        kill -0 "$1" 2>/dev/null || { cat "$2"; exit 1; }
        sleep 0.2
    done
}

# serve LOCATION METER RETENTION: `smarty run` on the store, its meter's source a closed port
# (nothing arrives); sets $port.
serve() {
    local location=$1 name=$2 days=$3 conf="$dir/serve-$RANDOM.toml"
    port=$(free_port)
    {
        echo '[[meter]]'
        echo "name = \"$name\""
        echo "source = \"tcp://127.0.0.1:$(free_port)\""
        echo '[http]'
        echo "listen = \"127.0.0.1:$port\""
        echo '[store]'
        case $location in
            postgres://* | postgresql://*) echo "url = \"$location\"" ;;
            *) echo "path = \"$(realpath -m "${location#sqlite:}")\"" ;;
        esac
        echo "raw_retention_days = $days"
    } >"$conf"
    "$bin" run --config "$conf" --state-dir "$dir/state-$port" >/dev/null 2>"$conf.log" &
    pids+=($!)
    wait_http $! "$conf.log" "http://127.0.0.1:$port/api/meters"
}

# api_times PORT METER: median and max of 20 calls of each path.
api_times() {
    local port=$1 m=$2 now year month
    echo "== API on $3: median and max of 20 calls, seconds (curl time_total, loopback)"
    now=$(date +%s)
    year=$((now - 365 * 86400))
    month=$((now - 31 * 86400))
    for path in \
        "/api/meters" \
        "/api/meters/$m/summary" \
        "/api/meters/$m/series?field=power_import_kw" \
        "/api/meters/$m/intervals" \
        "/api/meters/$m/series?field=energy_import_kwh&from=$year&resolution=day" \
        "/api/meters/$m/series?field=power_import_kw&from=$year&resolution=day" \
        "/api/meters/$m/series?field=power_import_kw&from=$year&resolution=hour" \
        "/api/meters/$m/series?field=power_import_kw&from=$month&resolution=15m" \
        "/api/meters/$m/totals?period=month&from=$year" \
        "/api/meters/$m/tariff?period=month&from=$year" \
        "/api/meters/$m/totals?period=day&from=$month"; do
        curl -sf -o /dev/null "http://127.0.0.1:$port$path" || { echo "$path failed" >&2; exit 1; }
        for _ in $(seq 20); do
            curl -s -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$port$path"
        done | sort -n | awk -v p="$path" '{ t[NR] = $1 } END { printf "%-72s median %.4f  max %.4f\n", p, t[int((NR + 1) / 2)], t[NR] }'
    done
}

if [ -n "$store" ]; then
    serve "$store" "$meter" "$retention"
    api_times "$port" "$meter" "${store%%\?*}"
    exit 0
fi

port=$(free_port)
"$bin" demo --history-days "$days" --interval 2s --http "127.0.0.1:$port" --state-dir "$dir" \
    >/dev/null 2>"$dir/demo.log" &
demo=$!
pids+=("$demo")
wait_http "$demo" "$dir/demo.log" "http://127.0.0.1:$port/healthz"
grep "of history" "$dir/demo.log"
sleep 6   # a few live telegrams, so that the live checks of the page have something to see
echo "store: $(du -h "$dir/smarty.db" | cut -f1) ($(du -b "$dir/smarty.db" | cut -f1) bytes)"

echo "== dashboard (headless Chromium, SQLite)"
node crates/smarty/tests/browser/dashboard.mjs "http://127.0.0.1:$port/" "$dir/shots" 2>/dev/null

api_times "$port" demo "SQLite (the demo, live)"

case " $BACKENDS " in *" postgres "*) ;; *) exit 0 ;; esac
kill "$demo"
wait "$demo" 2>/dev/null || true
pgdb=smarty_bench_$$
createdb --maintenance-db="$PGURL/postgres" "$pgdb"
echo "== PostgreSQL $(psql -d "$PGURL/postgres" -Atc 'SHOW server_version'), settings: $(psql -d "$PGURL/postgres" -Atc "SELECT string_agg(name || '=' || setting || COALESCE(unit, ''), ', ' ORDER BY name) FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'shared_buffers', 'work_mem', 'max_wal_size')")"
t0=${EPOCHREALTIME/./}
"$bin" store migrate --from "sqlite:$dir/smarty.db" --to "$PGURL/$pgdb" >/dev/null 2>"$dir/migrate.log" ||
    { cat "$dir/migrate.log"; exit 1; }
t1=${EPOCHREALTIME/./}
echo "store migrate to PostgreSQL: $(( (t1 - t0) / 1000 )) ms; tables and indexes: $(psql -d "$PGURL/$pgdb" -Atc "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r'") bytes"
psql -d "$PGURL/$pgdb" -qc 'ANALYZE'
serve "$PGURL/$pgdb" demo 0
api_times "$port" demo "PostgreSQL (the demo's history, migrated; no live meter)"
