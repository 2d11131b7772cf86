//! Decodes a whole capture file with the library alone, as `smarty read FILE --quiet` does
//! with the whole program: the file read into memory first, then pushed into a [`Decoder`]
//! in 1 MiB blocks, every telegram drained. Prints the frames and the time the decode took
//! (one thread, so the wall clock is its CPU time on an idle core), to set beside
//! `/usr/bin/time smarty read FILE --key KEY --quiet`:
//!
//! ```sh
//! target/release/smarty simulate --key 00112233445566778899AABBCCDDEEFF --count 50000 --fast -o /tmp/f.bin
//! cargo run --release -p smarty-p1 --example decode_file -- /tmp/f.bin 00112233445566778899AABBCCDDEEFF
//! ```
//!
//! Arguments: FILE (binary frames back to back), KEY (32 hex digits), and optionally `once`:
//! decode the file once, so that `/usr/bin/time` gives the CPU time of the library's whole
//! process, the file's reading included, to set beside the program's:
//!
//! ```sh
//! /usr/bin/time target/release/examples/decode_file /tmp/f.bin 00112233445566778899AABBCCDDEEFF once
//! ```

use std::hint::black_box;
use std::time::Instant;

use smarty_p1::{Decoder, DecoderConfig, Key};

/// Bytes pushed at a time (the program's read block).
const BLOCK: usize = 1 << 20;

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("FILE");
    let key: Key = args
        .next()
        .expect("KEY")
        .parse()
        .expect("a key of 32 hex digits");
    let runs = if args.next().as_deref() == Some("once") {
        1
    } else {
        5
    };
    let bytes = std::fs::read(&path).expect("the capture file");
    let mut best = f64::MAX;
    let mut frames = 0u64;
    // The best of five: the machine is shared.
    for _ in 0..runs {
        let started = Instant::now();
        let mut decoder = Decoder::new(DecoderConfig::new(key.clone()));
        frames = 0;
        for block in bytes.chunks(BLOCK) {
            decoder.push(block);
            while let Some(result) = decoder.next() {
                black_box(result.expect("decodes").telegram.objects().len());
                frames += 1;
            }
        }
        while let Some(result) = decoder.finish() {
            black_box(result.expect("decodes").telegram.objects().len());
            frames += 1;
        }
        best = best.min(started.elapsed().as_secs_f64());
    }
    println!(
        "{frames} frames in {best:.3} s = {:.0} frames/s (library alone, best of {runs})",
        frames as f64 / best
    );
}
