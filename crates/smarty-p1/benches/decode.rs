//! Decoder throughput: complete decode of encrypted Smarty frames and plaintext DSMR
//! telegrams, plus the components (framing, decryption, CRC, parse, readings) to see where the
//! time goes.
//!
//! Benchmarks (run with `cargo bench -p smarty-p1 --bench decode`):
//!
//! - `decode/real_647`, `decode/full_list_1519`: a stream of [`FRAMES`] back-to-back frames of
//!   a running meter (the corpus telegram with its values changed from frame to frame,
//!   `support/running_meter.rs`, encrypted with increasing frame counters; the first is the
//!   corpus frame) pushed into a [`Decoder`] in [`CHUNK`]-byte pieces and drained after each
//!   push: framing + GCM tag check + CRC + parse (after the first, each telegram is read from
//!   the layout of the one before). Every telegram is consumed with `black_box`. Throughput in
//!   frames.
//! - `decode/real_647_new_shapes`, `decode/full_list_1519_new_shapes`: the same, with `i % 16`
//!   empty lines after the header in the `i`-th telegram, so that no telegram has the shape of
//!   the 15 before: every line of every telegram is read.
//! - `decode/plain_basjes_566`: the plaintext DSMR 5 capture `basjes_ttyUSB0_raw_lf.txt` with
//!   its CR bytes restored (566 complete telegrams) through a [`Decoder`] without key.
//!   Throughput in telegrams and bytes.
//! - `component/framing/*`: [`FrameDecoder`] alone over the same stream as `decode/*`.
//! - `component/decrypt/*`: [`Decryptor::decrypt`] of one frame (tag check included).
//! - `component/crc/*`: [`crc16_arc`] over the bytes the CRC covers (`/` through `!`).
//! - `component/parse/*`: [`smarty_p1::parse`] of the plaintext (includes its CRC check).
//! - `component/readings/*`: [`Telegram::readings`] on a parsed telegram.
//! - `component/manual_pipeline/*`: [`FrameDecoder`] + [`Decryptor`] + one [`parse`] per
//!   frame, written out here: what `decode/*_new_shapes` must do at minimum, for comparison.
//!
//! The inputs are the repository's test data (`crates/smarty-p1/tests/data`, see its
//! `MANIFEST.md`). Every input is checked before it is timed (all frames decode, authenticated, with the
//! expected values and no unknown line), so a broken decoder cannot produce a fast number.
//! Throughput is always in frames (telegrams) per iteration: ns per frame = time / elements.
//! Times are the benchmark thread's CPU time ([`ThreadCpu`]), not the wall clock.

use std::hint::black_box;
use std::path::PathBuf;

use std::time::Duration;

use cpu_time::ThreadTime;
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use smarty_p1::framing::{Event, FrameDecoder, Item};

#[path = "support/running_meter.rs"]
mod running_meter;
use smarty_p1::{
    Aad, Decoder, DecoderConfig, Decryptor, EncryptedFrame, Key, Telegram, crc16_arc,
    encrypt_frame, parse,
};

/// Frames per encrypted stream (one iteration of `decode/*`).
const FRAMES: usize = 1000;
/// Bytes per `push`, as a serial or socket reader would deliver them (also the default
/// `--chunk` of `bench/python_dsmr_parser.py`).
const CHUNK: usize = 4096;
/// Complete telegrams in the basjes capture (it starts with the tail of one).
const BASJES_TELEGRAMS: usize = 566;

/// The repository's test data.
fn corpus() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data"))
}

/// Reads a data file; the message names a missing one.
fn read(path: &std::path::Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("test data missing: {}: {e}", path.display()))
}

/// One encrypted corpus frame with everything derived from it.
struct Case {
    /// Benchmark id suffix.
    name: &'static str,
    key: Key,
    /// The corpus frame as captured.
    frame: Vec<u8>,
    /// Its decrypted telegram.
    plaintext: Vec<u8>,
    /// [`FRAMES`] frames back to back: the running meter's telegrams encrypted with counters
    /// c, c+1, … where c is the corpus frame's counter (so the first one is the corpus frame
    /// itself).
    stream: Vec<u8>,
    /// The same, the `i`-th telegram with `i % 16` empty lines more: a new shape every time.
    new_shapes: Vec<u8>,
    /// Data objects in the telegram.
    objects: usize,
    /// `1-0:1.8.0` as text of each frame, checked on every decoded telegram of the setup pass.
    energy_import: Vec<String>,
}

impl Case {
    fn load(name: &'static str, stem: &str, expected_len: usize) -> Case {
        let dir = corpus().join("encrypted");
        let hex = String::from_utf8(read(&dir.join(format!("{stem}.hex")))).expect("hex text");
        let frame = smarty_p1::hex::decode(&hex).expect("hex");
        assert_eq!(frame.len(), expected_len, "{stem}: frame length");
        let json = read(&dir.join(format!("{stem}.json")));
        let json: serde_json::Value = serde_json::from_slice(&json).expect("json");
        let key = Key::from_hex(json["key"].as_str().expect("key in .json")).expect("key");

        let parsed = EncryptedFrame::parse(&frame).expect("one frame");
        let mut plaintext = Vec::new();
        let authenticity = Decryptor::new(&key, Aad::default(), true)
            .decrypt(&parsed, &mut plaintext)
            .expect("corpus frame decrypts");
        assert_eq!(authenticity, smarty_p1::Authenticity::Verified);
        let title = parsed.system_title();
        let counter = parsed.frame_counter();

        let mut stream = Vec::with_capacity(FRAMES * frame.len());
        let mut new_shapes = Vec::with_capacity(FRAMES * (frame.len() + 2));
        let mut energy_import = Vec::with_capacity(FRAMES);
        for i in 0..FRAMES as u32 {
            let telegram = running_meter::telegram(&plaintext, i);
            energy_import.push(
                parse(&telegram)
                    .expect("running meter's telegram")
                    .readings()
                    .energy_import_kwh
                    .expect("1-0:1.8.0")
                    .to_string(),
            );
            let f = encrypt_frame(&key, &Aad::default(), title, counter + i, &telegram);
            if i == 0 {
                assert_eq!(
                    f, frame,
                    "{stem}: re-encryption reproduces the corpus frame"
                );
            }
            stream.extend_from_slice(&f);
            let telegram = running_meter::new_shape(telegram, i);
            let f = encrypt_frame(&key, &Aad::default(), title, counter + i, &telegram);
            new_shapes.extend_from_slice(&f);
        }
        assert_ne!(energy_import[0], energy_import[1], "{stem}: values change");

        let telegram = parse(&plaintext).expect("plaintext parses");
        assert_eq!(telegram.crc(), smarty_p1::CrcStatus::Valid);
        assert!(
            telegram.unknown_lines().is_empty(),
            "{stem}: every line must be understood: {:?}",
            telegram.unknown_lines()
        );
        let data_lines = plaintext
            .split(|&b| b == b'\n')
            .filter(|l| l.first().is_some_and(u8::is_ascii_digit))
            .count();
        assert_eq!(
            telegram.objects().len(),
            data_lines,
            "{stem}: one object per line"
        );
        let objects = telegram.objects().len();
        drop(telegram);

        let case = Case {
            name,
            key,
            frame,
            plaintext,
            stream,
            new_shapes,
            objects,
            energy_import,
        };
        case.verify_decoder();
        case
    }

    fn decoder(&self) -> Decoder {
        Decoder::new(DecoderConfig::new(self.key.clone()))
    }

    /// The setup pass: decodes the stream exactly as the benchmark does and checks every
    /// telegram.
    fn verify_decoder(&self) {
        self.verify_stream(&self.stream);
        self.verify_stream(&self.new_shapes);
        // The hand-written pipeline must agree too.
        assert_eq!(manual_pipeline(&self.stream, &self.key), FRAMES);
        assert_eq!(framing_only(&self.stream), FRAMES);
    }

    fn verify_stream(&self, stream: &[u8]) {
        let mut decoder = self.decoder();
        let mut n = 0u32;
        let mut first_counter = None;
        for chunk in stream.chunks(CHUNK) {
            decoder.push(chunk);
            while let Some(result) = decoder.next() {
                let decoded = result.unwrap_or_else(|e| panic!("{}: frame {n}: {e}", self.name));
                let info = decoded.frame.expect("encrypted");
                assert!(info.authenticated);
                let first = *first_counter.get_or_insert(info.frame_counter);
                assert_eq!(info.frame_counter, first + n);
                let t = &decoded.telegram;
                assert_eq!(t.objects().len(), self.objects);
                assert!(t.unknown_lines().is_empty());
                assert_eq!(
                    t.readings()
                        .energy_import_kwh
                        .map(|d| d.to_string())
                        .as_ref(),
                    Some(&self.energy_import[n as usize])
                );
                n += 1;
            }
        }
        assert!(decoder.finish().is_none());
        assert_eq!(n as usize, FRAMES, "{}: all frames decode", self.name);
        let stats = decoder.stats();
        assert_eq!(stats.frames, FRAMES as u64);
        assert_eq!(stats.telegrams, FRAMES as u64);
        assert_eq!(stats.rejected_total(), 0);
        assert_eq!(stats.noise_bytes, 0);
        assert_eq!(stats.with_unknown_lines, 0);
        // A running meter's telegrams after the first are read from the layout; a new shape
        // every time reads the lines of every one (of the first two in a row, then every 8th,
        // the layout is recorded again).
        if std::ptr::eq(stream, self.stream.as_slice()) {
            assert_eq!(stats.from_layout, FRAMES as u64 - 1, "{}", self.name);
        } else {
            assert_eq!(stats.from_layout, 0, "{}", self.name);
        }
    }

    /// The bytes the CRC covers: `/` through `!`.
    fn crc_range(&self) -> &[u8] {
        let start = self.plaintext.iter().position(|&b| b == b'/').expect("/");
        let bang = self
            .plaintext
            .windows(2)
            .position(|w| w == b"\n!")
            .expect("!")
            + 1;
        &self.plaintext[start..=bang]
    }
}

/// The measured work of `decode/*`: push the stream in chunks, drain, consume every telegram.
fn decode_stream(decoder: &mut Decoder, stream: &[u8]) -> usize {
    let mut n = 0;
    for chunk in stream.chunks(CHUNK) {
        decoder.push(chunk);
        while let Some(result) = decoder.next() {
            if let Ok(decoded) = result {
                black_box(&decoded.telegram);
                n += 1;
            }
        }
    }
    n
}

/// Framing alone over the same stream: number of encrypted frames found.
fn framing_only(stream: &[u8]) -> usize {
    let mut framer = FrameDecoder::default();
    let mut n = 0;
    for chunk in stream.chunks(CHUNK) {
        framer.push(chunk);
        while let Some(event) = framer.next() {
            if let Event::Item(Item::Encrypted(frame)) = event {
                black_box(frame.ciphertext());
                n += 1;
            }
        }
    }
    n
}

/// Framing + decryption + a single parse per frame, without [`Decoder`].
fn manual_pipeline(stream: &[u8], key: &Key) -> usize {
    let mut framer = FrameDecoder::default();
    let mut decryptor = Decryptor::new(key, Aad::default(), true);
    let mut plaintext = Vec::with_capacity(2048);
    let mut n = 0;
    for chunk in stream.chunks(CHUNK) {
        framer.push(chunk);
        while let Some(event) = framer.next() {
            if let Event::Item(Item::Encrypted(frame)) = event
                && decryptor.decrypt(&frame, &mut plaintext).is_ok()
                && let Ok(telegram) = parse(&plaintext)
            {
                black_box(&telegram);
                n += 1;
            }
        }
    }
    n
}

fn cases() -> Vec<Case> {
    vec![
        Case::load("real_647", "nexxtlab_lux_t210d_fc0005a8e3", 647),
        Case::load("full_list_1519", "lux_spec_full_list_synthetic", 1519),
    ]
}

fn load_basjes() -> Vec<u8> {
    // Stored LF-only as published; every CRC validates once LF is CR LF again.
    let lf = read(&corpus().join("streams/basjes_ttyUSB0_raw_lf.txt"));
    let mut bytes = Vec::with_capacity(lf.len() + lf.len() / 16);
    for &b in &lf {
        if b == b'\n' {
            bytes.push(b'\r');
        }
        bytes.push(b);
    }
    // Setup pass: every complete telegram decodes.
    let mut decoder = Decoder::new(DecoderConfig::default());
    let mut n = 0;
    for chunk in bytes.chunks(CHUNK) {
        decoder.push(chunk);
        while let Some(result) = decoder.next() {
            let decoded = result.expect("plaintext telegram");
            assert!(decoded.frame.is_none());
            assert_eq!(decoded.telegram.crc(), smarty_p1::CrcStatus::Valid);
            assert!(decoded.telegram.readings().energy_import_kwh.is_some());
            n += 1;
        }
    }
    while let Some(result) = decoder.finish() {
        result.expect("nothing left but the leading partial telegram's noise");
    }
    assert_eq!(n, BASJES_TELEGRAMS, "all telegrams of the capture decode");
    assert_eq!(decoder.stats().rejected_total(), 0);
    // A real meter's stream: every telegram after the first has the shape of the one before.
    assert_eq!(decoder.stats().from_layout, n as u64 - 1);
    bytes
}

fn decode(c: &mut Criterion<ThreadCpu>) {
    let cases = cases();
    let mut group = c.benchmark_group("decode");
    for case in &cases {
        group.throughput(Throughput::Elements(FRAMES as u64));
        group.bench_function(case.name, |b| {
            b.iter(|| {
                let mut decoder = case.decoder();
                let n = decode_stream(&mut decoder, black_box(&case.stream));
                assert_eq!(n, FRAMES);
                n
            })
        });
        group.bench_function(format!("{}_new_shapes", case.name), |b| {
            b.iter(|| {
                let mut decoder = case.decoder();
                let n = decode_stream(&mut decoder, black_box(&case.new_shapes));
                assert_eq!(n, FRAMES);
                n
            })
        });
    }

    let basjes = load_basjes();
    group.throughput(Throughput::ElementsAndBytes {
        elements: BASJES_TELEGRAMS as u64,
        bytes: basjes.len() as u64,
    });
    group.bench_function("plain_basjes_566", |b| {
        b.iter(|| {
            let mut decoder = Decoder::new(DecoderConfig::default());
            let n = decode_stream(&mut decoder, black_box(&basjes));
            assert_eq!(n, BASJES_TELEGRAMS);
            n
        })
    });
    group.finish();
}

fn component(c: &mut Criterion<ThreadCpu>) {
    let cases = cases();
    let mut group = c.benchmark_group("component");
    for case in &cases {
        let name = case.name;

        group.throughput(Throughput::Elements(FRAMES as u64));
        group.bench_function(format!("framing/{name}"), |b| {
            b.iter(|| framing_only(black_box(&case.stream)))
        });

        group.throughput(Throughput::Elements(1));
        let frame = EncryptedFrame::parse(&case.frame).expect("frame");
        let mut decryptor = Decryptor::new(&case.key, Aad::default(), true);
        let mut plaintext = Vec::with_capacity(2048);
        decryptor.decrypt(&frame, &mut plaintext).expect("decrypts");
        assert_eq!(plaintext, case.plaintext);
        group.bench_function(format!("decrypt/{name}"), |b| {
            b.iter(|| {
                let r = decryptor.decrypt(black_box(&frame), &mut plaintext);
                assert!(r.is_ok());
                black_box(&plaintext);
            })
        });

        let covered = case.crc_range();
        group.bench_function(format!("crc/{name}"), |b| {
            b.iter(|| crc16_arc(black_box(covered)))
        });

        group.bench_function(format!("parse/{name}"), |b| {
            b.iter(|| {
                let telegram = parse(black_box(&case.plaintext)).expect("parses");
                black_box(&telegram);
            })
        });

        let telegram: Telegram<'_> = parse(&case.plaintext).expect("parses");
        group.bench_function(format!("readings/{name}"), |b| {
            b.iter(|| black_box(&telegram).readings())
        });

        group.throughput(Throughput::Elements(FRAMES as u64));
        group.bench_function(format!("manual_pipeline/{name}"), |b| {
            b.iter(|| {
                let n = manual_pipeline(black_box(&case.stream), &case.key);
                assert_eq!(n, FRAMES);
                n
            })
        });
    }
    group.finish();
}

/// Criterion's measurement in the benchmark thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`,
/// through the `cpu-time` crate) instead of the wall clock: on a shared machine, the time the
/// thread ran, not the time it waited for a core. Shown and saved like wall-clock times (ns).
struct ThreadCpu;

/// Criterion's formatter of durations, borrowed for [`ThreadCpu`].
static WALL: WallTime = WallTime;

impl Measurement for ThreadCpu {
    type Intermediate = ThreadTime;
    type Value = Duration;

    fn start(&self) -> ThreadTime {
        ThreadTime::now()
    }
    fn end(&self, started: ThreadTime) -> Duration {
        started.elapsed()
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        WALL.formatter()
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpu);
    targets = decode, component
}
criterion_main!(benches);
