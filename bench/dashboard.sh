#!/usr/bin/env bash
# The dashboard's first paint and the API's query times over a year of history.
#
#   bench/dashboard.sh [DAYS]     (default 365)
#
# `smarty demo --history-days DAYS` fills a fresh store with the virtual meter's past (a
# telegram every 5 minutes, every minute in the last week, every 10 s in the last two days;
# 15-minute and daily aggregates for the whole period) and goes live at a telegram every 2 s.
# Then:
#   - the headless-Chromium test (crates/smarty/tests/browser/dashboard.mjs) loads the
#     dashboard and reports its first contentful paint (fcp_ms) among other timings;
#   - curl times the API calls the dashboard makes and the year-long ones (median of 20).
# Needs: a release build (made here), Chromium and crates/smarty-web/static/node_modules
# (./scripts/test installs both), curl.
set -euo pipefail
cd "$(dirname "$0")/.."
days=${1:-365}
cargo build --release -q -p smarty
bin=target/release/smarty
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" demo --history-days "$days" --interval 2s --http "127.0.0.1:$port" --state-dir "$dir" \
    >/dev/null 2>"$dir/demo.log" &
demo=$!
trap 'kill $demo 2>/dev/null; wait $demo 2>/dev/null; rm -rf "$dir"' EXIT
until curl -sf "http://127.0.0.1:$port/healthz" >/dev/null; do
    kill -0 $demo 2>/dev/null || { cat "$dir/demo.log"; exit 1; }
    sleep 0.5
done
grep "of history" "$dir/demo.log"
sleep 6   # a few live telegrams, so that the live checks of the page have something to see
echo "store: $(du -h "$dir/smarty.db" | cut -f1) ($(du -b "$dir/smarty.db" | cut -f1) bytes)"

echo "== dashboard (headless Chromium)"
node crates/smarty/tests/browser/dashboard.mjs "http://127.0.0.1:$port/" "$dir/shots" 2>/dev/null

echo "== API: median and max of 20 calls, seconds (curl time_total, loopback)"
now=$(date +%s)
year=$((now - 365 * 86400))
month=$((now - 31 * 86400))
for path in \
    "/api/meters" \
    "/api/meters/demo/summary" \
    "/api/meters/demo/series?field=power_import_kw" \
    "/api/meters/demo/intervals" \
    "/api/meters/demo/series?field=energy_import_kwh&from=$year&resolution=day" \
    "/api/meters/demo/series?field=power_import_kw&from=$year&resolution=day" \
    "/api/meters/demo/series?field=power_import_kw&from=$year&resolution=hour" \
    "/api/meters/demo/series?field=power_import_kw&from=$month&resolution=15m" \
    "/api/meters/demo/totals?period=month&from=$year" \
    "/api/meters/demo/tariff?period=month&from=$year" \
    "/api/meters/demo/totals?period=day&from=$month"; do
    for _ in $(seq 20); do
        curl -s -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$port$path"
    done | sort -n | awk -v p="$path" '{ t[NR] = $1 } END { printf "%-70s median %.4f  max %.4f\n", p, t[int((NR + 1) / 2)], t[NR] }'
done
