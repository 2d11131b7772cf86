#!/usr/bin/env bash
# Size and start-up time of each release artefact in dist/out (scripts/release): the median
# wall time of 21 runs of `smarty --version` and of `smarty read` of the real frame (start,
# decode one frame, exit), natively for x86_64 and under qemu-user / Wine for the others (an
# emulator's figure, not the board's). Prints a Markdown table. Run it after scripts/release,
# whose checks also make the Wine prefix it uses.
#
#   bench/artefacts.sh            # after scripts/release
set -euo pipefail
cd "$(dirname "$0")/.."
frame=crates/smarty-p1/tests/data/encrypted/nexxtlab_lux_t210d_fc0005a8e3.hex
key=D491470F47126332B07D1923B3504188

median_ms() { # COMMAND…: the median wall time of 21 runs, in ms
    python3 - "$@" <<'PY'
import statistics, subprocess, sys, time
times = []
for _ in range(21):
    start = time.perf_counter()
    subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    times.append((time.perf_counter() - start) * 1000)
print(f"{statistics.median(times):.1f}")
PY
}

echo "| artefact | size | \`--version\` | \`read\` of one frame | run by |"
echo "|---|---|---|---|---|"
for f in dist/out/*; do
    name=$(basename "$f")
    size=$(stat -c %s "$f")
    case $name in
    *.deb | SHA256SUMS | *.ps1)
        printf '| `%s` | %s B | | | |\n' "$name" "$size"
        continue ;;
    *x86_64-linux) run=() ; by="this machine" ;;
    *aarch64-linux) run=(qemu-aarch64) ; by="qemu-aarch64" ;;
    *armv7-linux) run=(qemu-arm) ; by="qemu-arm" ;;
    *windows.exe)
        # The Wine prefix of scripts/check-artefact (made by scripts/release's checks).
        export WINEPREFIX=$PWD/target/wine-prefix WINEDEBUG=-all
        run=(wine) ; by="Wine 8" ;;
    esac
    arg=$frame
    [ "${run[0]:-}" != wine ] || arg=$(winepath -w "$frame" 2>/dev/null)
    version=$(median_ms "${run[@]}" "$f" --version)
    read=$(median_ms "${run[@]}" "$f" read "$arg" --key "$key" --quiet)
    printf '| `%s` | %s B (%s MiB) | %s ms | %s ms | %s |\n' "$name" "$size" \
        "$(awk "BEGIN { printf \"%.1f\", $size / 1048576 }")" "$version" "$read" "$by"
done
