//! Decodes the frames of a running meter N times, for instruction counting with callgrind (cycle
//! timings on a shared VM are too noisy to compare small changes; instruction counts are exact):
//!
//! ```sh
//! cargo build --release -p smarty-p1 --example decode_loop
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \
//!     target/release/examples/decode_loop crates/smarty-p1/tests/data/encrypted/nexxtlab_lux_t210d_fc0005a8e3.hex 1000
//! callgrind_annotate /tmp/cg.out | head -30
//! ```
//!
//! Arguments: FRAME.hex (its key is read from the sibling .json), N, and optionally a mode:
//!
//! - none: the complete decode of frame after frame of a running meter: the corpus telegram
//!   with its values changed from one to the next (`benches/support/running_meter.rs`), encrypted
//!   with increasing counters; a pool of 64 such frames is made first and cycled;
//! - `typed`: the same, then every object's value converted (what an application that reads
//!   every value adds to it);
//! - `cold`: the same, but each telegram's shape differs from the 15 before (`i % 16` empty
//!   lines more), so that none is read from a layout: every line is read;
//! - `off`, `cold-off`: as none and `cold`, with the layout off (`DecoderConfig::reuse_layout`);
//! - `parse`: `smarty_p1::parse` alone on the decrypted corpus telegram.

use std::hint::black_box;

use smarty_p1::{
    Aad, Decoder, DecoderConfig, Decryptor, EncryptedFrame, Key, encrypt_frame, parse,
};

#[path = "../benches/support/running_meter.rs"]
mod running_meter;

/// Frames in the pool that is cycled.
const POOL: u32 = 64;

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("FRAME.hex");
    let n: u32 = args.next().map_or(1000, |n| n.parse().expect("N"));
    let mode = args.next();
    let parse_only = mode.as_deref() == Some("parse");
    let typed = mode.as_deref() == Some("typed");
    let cold = mode.as_deref().is_some_and(|m| m.starts_with("cold"));
    // `off`, `cold-off`: the layout off (every line of every telegram read).
    let layout = !mode.as_deref().is_some_and(|m| m.ends_with("off"));
    let frame =
        smarty_p1::hex::decode(&std::fs::read_to_string(&path).expect("frame file")).expect("hex");
    let meta = std::fs::read_to_string(path.replace(".hex", ".json")).expect("sibling .json");
    let key_at = meta.find("\"key\": \"").expect("key in json") + 8;
    let key: Key = meta[key_at..key_at + 32].parse().expect("key");

    if parse_only {
        let parsed = EncryptedFrame::parse(&frame).expect("frame");
        let mut plaintext = Vec::new();
        Decryptor::new(&key, Default::default(), true)
            .decrypt(&parsed, &mut plaintext)
            .expect("decrypts");
        for _ in 0..n {
            black_box(
                parse(black_box(&plaintext))
                    .expect("parses")
                    .objects()
                    .len(),
            );
        }
        return;
    }
    let parsed = EncryptedFrame::parse(&frame).expect("frame");
    let mut plaintext = Vec::new();
    Decryptor::new(&key, Aad::default(), true)
        .decrypt(&parsed, &mut plaintext)
        .expect("decrypts");
    let pool: Vec<Vec<u8>> = (0..POOL)
        .map(|i| {
            let mut telegram = running_meter::telegram(&plaintext, i);
            if cold {
                telegram = running_meter::new_shape(telegram, i);
            }
            let counter = parsed.frame_counter() + i;
            encrypt_frame(
                &key,
                &Aad::default(),
                parsed.system_title(),
                counter,
                &telegram,
            )
        })
        .collect();
    assert_ne!(
        running_meter::telegram(&plaintext, 1),
        plaintext,
        "values change"
    );
    let mut decoder = Decoder::new(DecoderConfig::new(key).with_reuse_layout(layout));
    let mut accepted = 0;
    for i in 0..n {
        decoder.push(black_box(&pool[(i % POOL) as usize]));
        while let Some(result) = decoder.next() {
            let decoded = result.expect("decodes");
            black_box(decoded.telegram.objects().len());
            if typed {
                for object in decoded.telegram.objects() {
                    black_box(object.value());
                }
            }
            accepted += 1;
        }
    }
    assert_eq!(accepted, n);
}
