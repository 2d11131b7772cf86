#!/usr/bin/env bash
# Instructions per frame of the decoder, exact (callgrind), for the two corpus frames of
# bench/rust_decode.sh: the difference of runs of 2,000 and 1,000 frames of
# crates/smarty-p1/examples/decode_loop.rs, so that start-up cancels out.
#
#   bench/instructions.sh          # complete decode of a running meter's frames (values change
#                                  # from frame to frame): framing, tag, decryption, CRC, parse
#   bench/instructions.sh cold     # the same, each telegram of another shape than the 15 before
#                                  # (none read from the last one's layout)
#   bench/instructions.sh off      # as without an argument, the layout off (every line read)
#   bench/instructions.sh cold-off # as cold, the layout off
#   bench/instructions.sh parse    # the telegram parser alone (CRC included)
#   bench/instructions.sh typed    # complete decode, then every object's value converted
#
# Needs valgrind (Debian package `valgrind`).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p smarty-p1 --example decode_loop --quiet
count() { # FRAME N [parse]
    valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        "${CARGO_TARGET_DIR:-target}"/release/examples/decode_loop "$1" "$2" ${3:+"$3"} 2>&1 | sed -n 's/.*Collected : //p'
}
for stem in nexxtlab_lux_t210d_fc0005a8e3 lux_spec_full_list_synthetic; do
    frame=crates/smarty-p1/tests/data/encrypted/$stem.hex
    one=$(count "$frame" 1000 "${1:-}") || { echo "decode_loop failed on $stem" >&2; exit 1; }
    two=$(count "$frame" 2000 "${1:-}") || { echo "decode_loop failed on $stem" >&2; exit 1; }
    echo "$stem ${1:-decode}: $(( (two - one) / 1000 )) instructions/frame"
done
