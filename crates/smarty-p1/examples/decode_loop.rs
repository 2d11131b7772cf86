//! Decodes one encrypted frame N times, for instruction counting with callgrind (cycle timings
//! on a shared VM are too noisy to compare small changes; instruction counts are exact):
//!
//! ```sh
//! cargo build --release -p smarty-p1 --example decode_loop
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \
//!     target/release/examples/decode_loop crates/smarty-p1/tests/data/encrypted/nexxtlab_lux_t210d_fc0005a8e3.hex 1000
//! callgrind_annotate /tmp/cg.out | head -30
//! ```
//!
//! Arguments: FRAME.hex (its key is read from the sibling .json), N, and optionally `parse`
//! to time only the telegram parser on the decrypted plaintext, or `typed` to convert every
//! object's value after the complete decode too (what an application that reads every value
//! adds to it).

use std::hint::black_box;

use smarty_p1::{Decoder, DecoderConfig, Decryptor, EncryptedFrame, Key, parse};

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("FRAME.hex");
    let n: u32 = args.next().map_or(1000, |n| n.parse().expect("N"));
    let mode = args.next();
    let parse_only = mode.as_deref() == Some("parse");
    let typed = mode.as_deref() == Some("typed");
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
    let mut decoder = Decoder::new(DecoderConfig::new(key));
    let mut accepted = 0;
    for _ in 0..n {
        decoder.push(black_box(&frame));
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
