//! Fuzz target: arbitrary bytes through the whole decoder and the telegram parser.
//!
//! The first byte of the input selects how the input is fed (its low 7 bits give the chunk
//! size, 1..=128; its high bit turns tolerant mode on); the whole input, first byte included,
//! is then pushed in chunks of that size into a [`Decoder`] with a fixed key (the public
//! NEXXTLAB test key, so that real frames in the seed corpus decrypt) and the replay check on.
//! The raw input also goes to `parse` and `parse_with(check_crc: false)`. Accepted telegrams
//! are exercised (readings, names, values, unknown lines) so that their lazy parts run too. Checked on every input:
//! the decoder's counters count every byte once (accepted + rejected + noise = input),
//! `parse` never accepts a telegram whose CRC fails or whose CRC line is damaged, and a decoder
//! with the layout off (`DecoderConfig::reuse_layout`) gives the same telegrams, objects,
//! values and unknown lines as the one with it on.
//!
//! Feeding the first byte as data as well keeps plain corpus files usable as seeds: `/`
//! gives chunks of 48 bytes, `0xDB` chunks of 92 bytes in tolerant mode.

#![no_main]

use libfuzzer_sys::fuzz_target;
use smarty_p1::{
    CrcStatus, Decoder, DecoderConfig, Key, ParseOptions, Telegram, parse, parse_with,
};

/// D491470F47126332B07D1923B3504188: the key of the real NEXXTLAB frame (reference §3.7).
const KEY: [u8; 16] = [
    0xD4, 0x91, 0x47, 0x0F, 0x47, 0x12, 0x63, 0x32, 0xB0, 0x7D, 0x19, 0x23, 0xB3, 0x50, 0x41, 0x88,
];

/// Everything a decoded telegram says, for comparing two decoders.
fn render(telegram: &Telegram<'_>) -> String {
    let values: Vec<_> = telegram.objects().iter().map(|o| o.value()).collect();
    format!("{telegram:?} {values:?} {:?}", telegram.unknown_lines())
}

/// Decodes `data` in pieces of `chunk` bytes: the decoder and what it accepted, rendered.
fn decode(data: &[u8], chunk: usize, config: DecoderConfig) -> (Decoder, Vec<String>) {
    let mut decoder = Decoder::new(config);
    let mut accepted = Vec::new();
    for piece in data.chunks(chunk) {
        decoder.push(piece);
        while let Some(result) = decoder.next() {
            if let Ok(decoded) = result {
                exercise(&decoded.telegram);
                accepted.push(render(&decoded.telegram));
            }
        }
    }
    while let Some(result) = decoder.finish() {
        if let Ok(decoded) = result {
            exercise(&decoded.telegram);
            accepted.push(render(&decoded.telegram));
        }
    }
    (decoder, accepted)
}

fn exercise(telegram: &Telegram<'_>) {
    let _ = (
        telegram.header_str(),
        telegram.timestamp(),
        telegram.meter_id(),
    );
    let _ = telegram.readings();
    for object in telegram.objects() {
        let _ = telegram.name_of(object).map(|name| name.to_string());
        let _ = (object.value(), object.is_understood());
    }
    assert_eq!(
        telegram.has_unknown_lines(),
        !telegram.unknown_lines().is_empty()
    );
}

fuzz_target!(|data: &[u8]| {
    let Some(&first) = data.first() else {
        return;
    };
    let chunk = usize::from(first & 0x7F) + 1;
    let config = DecoderConfig::new(Key::from_bytes(KEY))
        .with_verify_tag(first & 0x80 == 0)
        .with_reject_replay(true);
    let (decoder, accepted) = decode(data, chunk, config.clone());
    let (_, line_by_line) = decode(data, chunk, config.with_reuse_layout(false));
    assert_eq!(accepted, line_by_line, "the layout changed what was decoded");
    let stats = decoder.stats();
    assert_eq!(
        stats.accepted_bytes + stats.rejected_bytes + stats.noise_bytes,
        data.len() as u64,
        "every byte counted once: {stats:?}"
    );

    if let Ok(telegram) = parse(data) {
        assert!(
            matches!(telegram.crc(), CrcStatus::Valid | CrcStatus::Absent),
            "parse accepted {:?}",
            telegram.crc()
        );
        exercise(&telegram);
    }
    if let Ok(telegram) = parse_with(data, ParseOptions::default().with_check_crc(false)) {
        exercise(&telegram);
    }
});
