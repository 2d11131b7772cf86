//! The parser against its own recorded results: every telegram of the test data, and 300
//! damaged variants of each (bytes changed to the characters that matter to the parser,
//! removed, repeated, lines cut), rendered through the public API and hashed per file. The
//! hashes in `tests/data/parser-oracle.txt` were recorded with the parser as it was before
//! its speed work (issue 12), so a faster parser must give the same telegrams, objects,
//! values, names and unknown lines, to the byte.
//!
//! When the parser is meant to change what it gives, record again and say why in the commit:
//!
//! ```sh
//! SMARTY_ORACLE=record cargo test -p smarty-p1 --test differential
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use smarty_p1::{ParseOptions, Telegram, Value, parse_with};

/// Damaged variants per telegram.
const VARIANTS: u32 = 300;

fn data() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data"))
}

fn oracle_path() -> PathBuf {
    data().join("parser-oracle.txt")
}

/// xorshift64*: a fixed sequence, the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n.max(1) as u64).unwrap()
    }
}

/// The bytes the parser decides on.
const INTERESTING: &[u8] = b"()*.:-!/\r\n \t0123456789ABCDEFabcdefkWhVAm3sST\xff";

/// One damaged copy of `bytes`.
fn damage(bytes: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for _ in 0..=rng.below(3) {
        if out.is_empty() {
            break;
        }
        let at = rng.below(out.len());
        match rng.below(5) {
            0 | 1 => out[at] = INTERESTING[rng.below(INTERESTING.len())],
            2 => {
                out.remove(at);
            }
            3 => {
                let len = rng.below(40).min(out.len() - at);
                let piece = out[at..at + len].to_vec();
                let to = rng.below(out.len());
                out.splice(to..to, piece);
            }
            _ => {
                // A line cut short: from here to its end removed.
                let end = out[at..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(out.len(), |p| at + p);
                out.drain(at..end);
            }
        }
    }
    out
}

/// Everything the public API says of a parse.
fn render(out: &mut String, result: Result<Telegram<'_>, smarty_p1::TelegramError>) {
    let telegram = match result {
        Ok(telegram) => telegram,
        Err(e) => {
            writeln!(out, "error {e:?}").unwrap();
            return;
        }
    };
    writeln!(
        out,
        "header {:?} crc {:?} terminated {} raw {} version {:?} time {:?} id {:?}",
        telegram.header_str(),
        telegram.crc(),
        telegram.is_terminated(),
        telegram.raw().len(),
        telegram.version(),
        telegram.timestamp(),
        telegram.meter_id(),
    )
    .unwrap();
    for object in telegram.objects() {
        writeln!(
            out,
            "{} {:?} def {:?} {:?} name {:?} understood {} line {:?}",
            object.obis,
            object.code,
            object.def.map(|d| d.name),
            object.value(),
            telegram.name_of(object).map(|n| n.to_string()),
            object.is_understood(),
            object.line(),
        )
        .unwrap();
    }
    let unknown = telegram.unknown_lines();
    // The shortcuts agree with what they stand for (not part of the rendering, which was
    // recorded before they existed).
    assert_eq!(telegram.has_unknown_lines(), !unknown.is_empty());
    for object in telegram.objects() {
        let understood = object.def.is_some() && !matches!(object.value(), Value::Raw(_));
        assert_eq!(object.is_understood(), understood, "{:?}", object.line());
    }
    for line in unknown {
        writeln!(out, "unknown {:?}", String::from_utf8_lossy(line)).unwrap();
    }
    for channel in 0..10 {
        if let Some(medium) = telegram.medium(channel) {
            writeln!(out, "medium {channel} {medium:?}").unwrap();
        }
    }
}

/// FNV-1a, 64 bits: a stable digest of the rendering.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn telegram_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data().join("telegrams"))
        .expect("tests/data/telegrams")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    files
}

/// The rendering of a file's telegram and its variants.
fn rendering(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    let options = ParseOptions::default().with_check_crc(false);
    let mut out = String::new();
    render(&mut out, parse_with(&bytes, options));
    let mut rng = Rng(fnv(&path.file_name().unwrap().to_string_lossy()) | 1);
    for _ in 0..VARIANTS {
        let damaged = damage(&bytes, &mut rng);
        render(&mut out, parse_with(&damaged, options));
    }
    out
}

#[test]
fn the_parser_gives_what_it_gave_before_on_every_telegram_and_damaged_variant() {
    let now: BTreeMap<String, u64> = telegram_files()
        .iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, fnv(&rendering(p)))
        })
        .collect();
    assert!(now.len() >= 60, "only {} telegrams found", now.len());
    if std::env::var("SMARTY_ORACLE").as_deref() == Ok("record") {
        let mut text = String::from(
            "# FNV-1a of tests/differential.rs's rendering of each telegram and its damaged\n\
             # variants, as the parser gave them (SMARTY_ORACLE=record to write again).\n",
        );
        for (name, hash) in &now {
            writeln!(text, "{name} {hash:016x}").unwrap();
        }
        std::fs::write(oracle_path(), text).unwrap();
        return;
    }
    let recorded = std::fs::read_to_string(oracle_path()).expect("tests/data/parser-oracle.txt");
    let recorded: BTreeMap<String, u64> = recorded
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, hash) = l.split_once(' ').unwrap();
            (name.to_owned(), u64::from_str_radix(hash, 16).unwrap())
        })
        .collect();
    let differ: Vec<&String> = now
        .iter()
        .filter(|(name, hash)| recorded.get(*name) != Some(hash))
        .map(|(name, _)| name)
        .collect();
    assert!(
        differ.is_empty(),
        "the parser now gives something else for {} of {} files: {differ:?}\n\
         (render one with tests/differential.rs's `rendering` to see what changed)",
        differ.len(),
        now.len()
    );
    assert_eq!(
        recorded.len(),
        now.len(),
        "files recorded and found differ: record again after adding telegrams"
    );
}
