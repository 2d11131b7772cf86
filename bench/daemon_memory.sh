#!/usr/bin/env bash
# Resident memory of `smarty run` with three meters (virtual Smarty meters on TCP, with gas and
# water), MQTT to a local Mosquitto (discovery on), the plain-telegram proxy with a client,
# and /metrics scraped every second. Prints peak and final RSS from /proc/PID/status.
#
# Usage: bench/daemon_memory.sh [SECONDS]   (default 120; needs /usr/sbin/mosquitto)
# Environment: SMARTY=path/to/smarty (default target/release/smarty), INTERVAL=1s
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SMARTY=${SMARTY:-$ROOT/target/release/smarty}
SECONDS_TO_RUN=${1:-120}
INTERVAL=${INTERVAL:-1s}
KEY=000102030405060708090A0B0C0D0E0F
WORK=$(mktemp -d)
chmod 777 "$WORK"
PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

BROKER=$(free_port); PROXY=$(free_port); HTTP=$(free_port)
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$BROKER" > "$WORK/mosquitto.conf"
chmod 644 "$WORK/mosquitto.conf"
/usr/sbin/mosquitto -c "$WORK/mosquitto.conf" >/dev/null 2>&1 & PIDS+=($!)
wait_port "$BROKER"

CONFIG="$WORK/smarty.toml"
echo "state_dir = \"$WORK/state\"" > "$CONFIG"
mkdir -p "$WORK/state"
for i in 1 2 3; do
  port=$(free_port)
  "$SMARTY" simulate --listen "127.0.0.1:$port" --key "$KEY" --interval "$INTERVAL" --gas --water --seed "$i" >/dev/null 2>&1 & PIDS+=($!)
  wait_port "$port"
  printf '[[meter]]\nname = "meter%s"\nsource = "tcp://127.0.0.1:%s"\nkey = "%s"\ninterval_s = 1\n' "$i" "$port" "$KEY" >> "$CONFIG"
done
printf '[mqtt]\nurl = "mqtt://127.0.0.1:%s"\n[proxy]\nlisten = "127.0.0.1:%s"\n[http]\nlisten = "127.0.0.1:%s"\n' "$BROKER" "$PROXY" "$HTTP" >> "$CONFIG"

RUST_LOG=smarty=warn "$SMARTY" run --config "$CONFIG" >/dev/null 2>&1 & SMARTY_PID=$!; PIDS+=($SMARTY_PID)
wait_port "$PROXY"
# A proxy client and an MQTT subscriber, like Home Assistant would be.
(exec 3<>"/dev/tcp/127.0.0.1/$PROXY"; cat <&3 >/dev/null) & PIDS+=($!)
if command -v mosquitto_sub >/dev/null; then mosquitto_sub -p "$BROKER" -t '#' >/dev/null & PIDS+=($!); fi

end=$((SECONDS + SECONDS_TO_RUN))
while [ $SECONDS -lt $end ]; do
  curl -s "http://127.0.0.1:$HTTP/metrics" >/dev/null 2>&1 || true
  sleep 1
done
telegrams=$(curl -s "http://127.0.0.1:$HTTP/metrics" | awk '/^smarty_telegrams_total/ {s+=$2} END {print s+0}')
rss=$(awk '/VmRSS/ {print $2}' "/proc/$SMARTY_PID/status")
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$SMARTY_PID/status")
echo "smarty run: 3 meters, MQTT + discovery, proxy with 1 client, metrics; ${SECONDS_TO_RUN} s at ${INTERVAL} per meter"
echo "telegrams decoded: $telegrams"
echo "resident memory: now $((rss / 1024)).$(( (rss % 1024) * 10 / 1024 )) MiB, peak $((hwm / 1024)).$(( (hwm % 1024) * 10 / 1024 )) MiB (VmRSS/VmHWM, $rss/$hwm KiB)"
