#!/usr/bin/env bash
# Decoder throughput: Rust smarty-p1 (criterion, benches/decode.rs) against Python
# dsmr_parser 1.11.2 (bench/python_dsmr_parser.py) on the same two encrypted Smarty frames
# (Rust decodes them as a running meter's, values changing from frame to frame, and with a new
# shape every frame; Python decodes copies of the frame, which costs it the same: it keeps
# nothing from one telegram to the next).
# Prints Markdown tables on stdout; progress and raw output go to stderr and $LOG_DIR.
#
# Usage: bench/rust_decode.sh
# Environment:
#   RUNS=2            repetitions of the whole set (tables show min – max over the runs)
#   WARM_UP=1         criterion --warm-up-time, seconds
#   MEASURE=3         criterion --measurement-time, seconds
#   PY_COUNT=2000     frames per Python stream (--count)
#   PY_REPEAT=5       Python timed runs per measurement, best reported (--repeat)
#   SKIP_PYTHON=1     Rust only
#   LOG_DIR=target/bench-logs   raw criterion/Python output and results.jsonl
#   REPORT_ONLY=1     print the tables from an existing $LOG_DIR/results.jsonl, run nothing
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

RUNS=${RUNS:-2}
WARM_UP=${WARM_UP:-1}
MEASURE=${MEASURE:-3}
PY_COUNT=${PY_COUNT:-2000}
PY_REPEAT=${PY_REPEAT:-5}
SKIP_PYTHON=${SKIP_PYTHON:-0}
LOG_DIR=${LOG_DIR:-target/bench-logs}
REPORT_ONLY=${REPORT_ONLY:-0}
CORPUS="$ROOT/crates/smarty-p1/tests/data/encrypted"

# frame label | file in crates/smarty-p1/tests/data/encrypted | criterion id
FRAMES=(
  "real_647|nexxtlab_lux_t210d_fc0005a8e3.hex|decode/real_647"
  "full_list_1519|lux_spec_full_list_synthetic.hex|decode/full_list_1519"
)

mkdir -p "$LOG_DIR"
RESULTS="$LOG_DIR/results.jsonl"
if [ "$REPORT_ONLY" = 1 ]; then
  RUNS=0
else
  : >"$RESULTS"
fi

# Appends one JSON line per criterion benchmark of the last run to $RESULTS.
collect_criterion() {
  python3 - "$1" "$RESULTS" "${CARGO_TARGET_DIR:-target}/criterion" <<'EOF'
import json, pathlib, sys
run, out, criterion_dir = int(sys.argv[1]), sys.argv[2], sys.argv[3]
with open(out, "a") as f:
    for bench in sorted(pathlib.Path(criterion_dir).glob("*/*/new/benchmark.json")):
        meta = json.loads(bench.read_text())
        est = json.loads((bench.parent / "estimates.json").read_text())
        # The figure criterion prints: the slope (linear sampling) or else the mean.
        ns = (est.get("slope") or est["mean"])["point_estimate"]
        thr = meta.get("throughput") or {}
        both = thr.get("ElementsAndBytes", {})
        elements = thr.get("Elements") or both.get("elements") or 1
        nbytes = thr.get("Bytes") or both.get("bytes")
        f.write(json.dumps({"impl": "rust", "run": run, "id": meta["full_id"],
                            "ns_per_iter": ns, "elements": elements,
                            "ns_per_element": ns / elements,
                            "per_second": elements * 1e9 / ns,
                            "mib_per_second": nbytes and nbytes * 1e9 / ns / 2**20}) + "\n")
EOF
}

for ((run = 1; run <= RUNS; run++)); do
  : >"$LOG_DIR/python-run$run.txt"
  echo "== run $run/$RUNS: cargo bench" >&2
  cargo bench -p smarty-p1 --bench decode -- \
    --warm-up-time "$WARM_UP" --measurement-time "$MEASURE" \
    >"$LOG_DIR/criterion-run$run.txt" 2>&1 || {
    cat "$LOG_DIR/criterion-run$run.txt" >&2
    exit 1
  }
  grep -E '^(decode|component)/|time: +\[[0-9]|thrpt: +\[[0-9]' "$LOG_DIR/criterion-run$run.txt" >&2 || true
  collect_criterion "$run"

  if [ "$SKIP_PYTHON" != 1 ]; then
    for entry in "${FRAMES[@]}"; do
      IFS='|' read -r label file _ <<<"$entry"
      echo "== run $run/$RUNS: python dsmr_parser $label" >&2
      python3 bench/python_dsmr_parser.py --frame "$CORPUS/$file" \
        --count "$PY_COUNT" --repeat "$PY_REPEAT" | tee -a "$LOG_DIR/python-run$run.txt" |
        python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
print(json.dumps({"impl": "python", "run": int(sys.argv[1]), "id": sys.argv[2],
                  "impl_name": r["impl"], "elements": r["frames"],
                  "ns_per_element": r["best_seconds"] * 1e9 / r["frames"],
                  "per_second": r["frames_per_second"]}))' "$run" "$label" >>"$RESULTS"
    done
  fi
done

python3 - "$RESULTS" "${FRAMES[@]}" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
frames = [e.split("|") for e in sys.argv[2:]]

def values(impl, id_, key):
    return [r[key] for r in rows if r["impl"] == impl and r["id"] == id_]

def rng(vs, fmt):
    if not vs:
        return "n/a"
    lo, hi = min(vs), max(vs)
    return fmt(lo) if len(vs) == 1 or fmt(lo) == fmt(hi) else f"{fmt(lo)} – {fmt(hi)}"

count = lambda v: f"{v:,.0f}"
runs = len({r["run"] for r in rows})
print(f"Decode throughput, one core ({runs} run(s); range over runs)\n")
print("| impl | frame | frames/s |")
print("|---|---|---|")
for label, _, cid in frames:
    print(f"| rust smarty-p1 (Decoder), running meter | {label} | {rng(values('rust', cid, 'per_second'), count)} |")
    print(f"| rust smarty-p1 (Decoder), a new shape every frame | {label} | {rng(values('rust', cid + '_new_shapes', 'per_second'), count)} |")
    py = values("python", label, "per_second")
    if py:
        name = next(r["impl_name"] for r in rows if r["impl"] == "python")
        print(f"| {name} | {label} | {rng(py, count)} |")
for label, _, cid in frames:
    # Rust and Python of the same run were measured minutes apart: compare those pairs.
    ratios = [r["per_second"] / p["per_second"]
              for r in rows if r["impl"] == "rust" and r["id"] == cid
              for p in rows if p["impl"] == "python" and p["id"] == label and p["run"] == r["run"]]
    if ratios:
        print(f"\nspeed-up {label} (Rust/Python, same run): {rng(ratios, lambda v: f'{v:,.0f}×')}", end="")
print("\n")

print("Components, ns per frame\n")
parts = ["framing", "decrypt", "crc", "parse", "readings", "manual_pipeline"]
print("| frame | " + " | ".join(parts) + " | decode |")
print("|---|" + "---|" * (len(parts) + 1))
ns = lambda v: f"{v:,.0f}"
for label, _, cid in frames:
    cells = [rng(values("rust", f"component/{p}/{label}", "ns_per_element"), ns) for p in parts]
    cells.append(rng(values("rust", cid, "ns_per_element"), ns))
    print(f"| {label} | " + " | ".join(cells) + " |")

plain = "decode/plain_basjes_566"
if values("rust", plain, "per_second"):
    print(f"\nplaintext DSMR stream (basjes, 566 telegrams): "
          f"{rng(values('rust', plain, 'per_second'), count)} telegrams/s, "
          f"{rng(values('rust', plain, 'mib_per_second'), lambda v: f'{v:.1f}')} MiB/s")
EOF
