//! Every file of the test data (`tests/data`, and the folder `SMARTY_CORPUS` names when it is
//! set) as a test case: encrypted frames decrypt to their expected plaintext or fail as
//! MANIFEST.md says, every telegram parses with the CRC status the manifest gives, the values
//! the sources assert match, and the streams decode as the manifest counts. The manifest of
//! `tests/data` lists every file there, each under a licence that allows shipping it.

#[path = "support/data.rs"]
mod data;
#[path = "support/expectations.rs"]
mod expectations;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use expectations::{Check, What, canonical_decimal, same_instant};
use serde_json::Value as Json;
use smarty_p1::{
    Aad, AadHint, CrcStatus, Decoder, DecoderConfig, DecryptError, Decryptor, EncryptedFrame, Key,
    ParseOptions, Rejection, Telegram, TelegramError, Timestamp, Value, parse, parse_with,
};

use data::files;

/// The CRC column of MANIFEST.md for every `telegrams/*.txt` row of `dir`.
fn manifest_crc(dir: &Path) -> BTreeMap<String, String> {
    let rows: BTreeMap<String, String> = data::manifest(dir)
        .into_iter()
        .filter(|r| r.file.starts_with("telegrams/") && r.file.ends_with(".txt"))
        .map(|r| {
            let crc = r.get("CRC").to_owned();
            (r.file.trim_start_matches("telegrams/").to_owned(), crc)
        })
        .collect();
    assert!(
        !rows.is_empty(),
        "{}: MANIFEST.md lists no telegrams/*.txt with a CRC column",
        dir.display()
    );
    rows
}

/// What the manifest says about a telegram's CRC.
#[derive(Debug, PartialEq)]
enum ExpectedCrc {
    Valid(u16),
    Absent,
    Invalid { stated: u16, computed: u16 },
    NoTerminator,
}

fn expected_crc(text: &str) -> ExpectedCrc {
    let hex_after = |word: &str| -> u16 {
        let at = text
            .find(word)
            .unwrap_or_else(|| panic!("{word} in {text}"))
            + word.len();
        let digits: String = text[at..]
            .trim_start()
            .chars()
            .take_while(char::is_ascii_hexdigit)
            .collect();
        u16::from_str_radix(&digits, 16).unwrap()
    };
    if text.starts_with("valid") {
        ExpectedCrc::Valid(hex_after("valid"))
    } else if text.starts_with("absent") {
        ExpectedCrc::Absent
    } else if text.starts_with("INVALID") {
        ExpectedCrc::Invalid {
            stated: hex_after("stated"),
            computed: hex_after("computed"),
        }
    } else if text.starts_with("no-terminator") {
        ExpectedCrc::NoTerminator
    } else {
        panic!("unknown CRC status {text:?}")
    }
}

/// The UTC offset (hours) of Central European time at a local date-time (EU rules: summer
/// time from the last Sunday of March 02:00 to the last Sunday of October 03:00).
fn cet_offset(t: &Timestamp) -> i32 {
    fn last_sunday(year: i32, month: u32) -> u32 {
        // Day of week of the 31st (Zeller-like, 0 = Sunday) via days since epoch.
        let days = days_from_civil(year, month, 31);
        let weekday = (days + 4).rem_euclid(7) as u32; // 1970-01-01 was a Thursday
        31 - weekday
    }
    fn days_from_civil(y: i32, m: u32, d: u32) -> i64 {
        let y = if m <= 2 { y - 1 } else { y } as i64;
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = m as i64;
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
        era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
    }
    let year = i32::from(t.year);
    let (month, day, hour) = (u32::from(t.month), u32::from(t.day), u32::from(t.hour));
    let start = last_sunday(year, 3);
    let end = last_sunday(year, 10);
    let summer = match month {
        4..=9 => true,
        3 => day > start || (day == start && hour >= 2),
        10 => day < end || (day == end && hour < 3),
        _ => false,
    };
    if summer { 2 } else { 1 }
}

fn rfc3339(t: &Timestamp) -> String {
    match t.dst {
        Some(_) => t.to_string(),
        None => format!("{t}+0{}:00", cet_offset(t)),
    }
}

/// Every decimal, unit, timestamp and text an object carries.
#[derive(Default, Debug)]
struct Carried {
    decimals: Vec<String>,
    units: Vec<Option<String>>,
    timestamps: Vec<String>,
    texts: Vec<String>,
    hex: Vec<String>,
    entries: Option<usize>,
}

fn carried(value: &Value<'_>) -> Carried {
    let mut c = Carried::default();
    let quantity = |c: &mut Carried, q: smarty_p1::Quantity<'_>| {
        c.decimals.push(canonical_decimal(&q.value.to_string()));
        c.units.push(q.unit.map(str::to_owned));
    };
    match *value {
        Value::Empty => {
            c.units.push(None);
            c.texts.push(String::new());
        }
        Value::Number(q) => quantity(&mut c, q),
        Value::Text(t) => {
            // An id that is not valid hex is kept as text: "as sent" is the same string.
            c.hex.push(t.to_owned());
            c.texts.push(t.to_owned());
            if t.bytes().all(|b| b.is_ascii_digit() || b == b'.') && !t.is_empty() {
                c.decimals.push(canonical_decimal(t));
            }
            c.units.push(None);
        }
        Value::OctetString(s) => {
            c.texts.push(s.text().unwrap_or_default());
            c.hex.push(s.hex().to_owned());
            // DSMR 4's numeric message code 0-0:96.13.1 is read as a number by some parsers.
            if !s.is_empty() && s.hex().bytes().all(|b| b.is_ascii_digit()) {
                c.decimals.push(canonical_decimal(s.hex()));
            }
            c.units.push(None);
        }
        Value::Timestamp(t) => {
            c.timestamps.extend(t.as_ref().map(rfc3339));
            c.units.push(None);
        }
        Value::TimedNumber { time, quantity: q } => {
            c.timestamps.extend(time.as_ref().map(rfc3339));
            quantity(&mut c, q);
        }
        Value::Numbers(_) => value.numbers().for_each(|q| quantity(&mut c, q)),
        Value::FailureLog(_) => {
            let mut n = 0;
            for e in value.failure_events() {
                c.timestamps.extend(e.end.as_ref().map(rfc3339));
                quantity(&mut c, e.duration);
                n += 1;
            }
            c.entries = Some(n);
        }
        Value::History(_) => {
            let mut n = 0;
            for h in value.history() {
                c.timestamps.extend(h.period.as_ref().map(rfc3339));
                c.timestamps.extend(h.time.as_ref().map(rfc3339));
                quantity(&mut c, h.quantity);
                n += 1;
            }
            c.entries = Some(n);
        }
        Value::Raw(_) => {}
        other => panic!("a value kind this check does not know yet: {other:?}"),
    }
    c
}

/// Checks one expectation against what our parser made of the telegram.
fn verify(telegram: &Telegram<'_>, check: &Check) -> Result<(), String> {
    let object = telegram
        .get(&check.obis)
        .ok_or_else(|| format!("no object {}", check.obis))?;
    let c = carried(&object.value());
    // A meter clock at its factory default (2000-01-01, 1970-01-01) is reported as "no
    // timestamp" by design (the issue's placeholder rule); sources that assert the default
    // date are checked for exactly that.
    if let What::Timestamp(t) = &check.what
        && (t.starts_with("2000-01-01") || t.starts_with("1970-01-01"))
    {
        return match object.value() {
            Value::Timestamp(None) | Value::TimedNumber { time: None, .. } => Ok(()),
            other => Err(format!(
                "{}: factory-default clock not a placeholder: {other:?}",
                check.obis
            )),
        };
    }
    let ok = match &check.what {
        What::Decimal(d) => c.decimals.contains(d),
        What::Unit(u) => c.units.contains(u),
        What::Text(t) => c.texts.contains(t),
        What::Hex(h) => c.hex.iter().any(|x| x.eq_ignore_ascii_case(h)),
        What::Timestamp(t) => c.timestamps.iter().any(|x| same_instant(x, t)),
        What::Count(n) => c.entries == Some(*n),
        What::Present => true,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{} {:?}: parsed {:?} carries {c:?}",
            check.obis,
            check.what,
            object.value()
        ))
    }
}

fn aad_from(json: &Json) -> Option<Aad> {
    match json.as_str()? {
        "" => Some(Aad::Empty),
        hex => Some(Aad::Custom(smarty_p1::hex::decode(hex).unwrap())),
    }
}

fn key_from(json: &Json) -> Key {
    json["key"].as_str().unwrap().parse().unwrap()
}

#[test]
fn encrypted_frames_decrypt_or_fail_as_the_manifest_says() {
    for dir in data::dirs() {
        encrypted_frames_in(&dir);
    }
}

fn encrypted_frames_in(dir: &Path) {
    let usual_aads = [
        Aad::default(),
        Aad::Empty,
        Aad::Custom(vec![smarty_p1::SECURITY_CONTROL]),
    ];
    let frames = files(dir, "encrypted", ".hex");
    let listed = data::manifest(dir)
        .iter()
        .filter(|r| r.file.starts_with("encrypted/") && r.file.ends_with(".hex"))
        .count();
    assert!(
        !frames.is_empty() && frames.len() == listed,
        "{}: {} frames, {listed} in MANIFEST.md",
        dir.display(),
        frames.len()
    );
    for path in frames {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = smarty_p1::hex::decode(&fs::read_to_string(&path).unwrap()).unwrap();
        let meta: Json =
            serde_json::from_str(&fs::read_to_string(path.with_extension("json")).unwrap())
                .unwrap();
        let frame = EncryptedFrame::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let verification = &meta["verification"];
        if let Some(title) = verification["system_title_hex"].as_str() {
            assert_eq!(
                frame.system_title().to_vec(),
                smarty_p1::hex::decode(title).unwrap(),
                "{name}"
            );
            let fc = u32::from_str_radix(verification["frame_counter_hex"].as_str().unwrap(), 16);
            assert_eq!(frame.frame_counter(), fc.unwrap(), "{name}");
        }
        let key = key_from(&meta);
        let aad = aad_from(&meta["aad"]).unwrap_or_else(|| panic!("{name}: AAD unknown"));
        let expected = data::read(dir, meta["expected_plaintext_file"].as_str().unwrap());
        let crc_valid = smarty_p1::crc_status(&expected) == CrcStatus::Valid;

        // The right key and AAD: the tag verifies and the plaintext is byte-exact.
        let mut plaintext = Vec::new();
        let authenticity = Decryptor::new(&key, aad.clone(), true)
            .decrypt(&frame, &mut plaintext)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(authenticity, smarty_p1::Authenticity::Verified, "{name}");
        assert_eq!(
            plaintext, expected,
            "{name}: plaintext differs from the expected file"
        );
        // Our encryption reproduces the frame byte for byte (how the synthetic frames made
        // for this project were made, and a check of `encrypt_frame` against the others).
        assert_eq!(
            smarty_p1::encrypt_frame(
                &key,
                &aad,
                frame.system_title(),
                frame.frame_counter(),
                &plaintext
            ),
            bytes,
            "{name}: encrypt_frame does not reproduce the frame"
        );

        // Every AAD the manifest says fails: an authentication error (key right), never
        // "wrong key"; the hint names a usual AAD when the right one is usual.
        for attempt in verification["gcm_tag_verification"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if attempt["tag_ok"].as_bool() == Some(true) {
                continue;
            }
            let wrong = aad_from(&attempt["aad"]).unwrap();
            let err = Decryptor::new(&key, wrong.clone(), true)
                .decrypt(&frame, &mut plaintext)
                .unwrap_err();
            let sc = smarty_p1::SECURITY_CONTROL;
            let right_is_usual = usual_aads
                .iter()
                .any(|u| u.to_bytes(sc) == aad.to_bytes(sc));
            match err {
                DecryptError::Authentication { hint } => {
                    assert!(crc_valid || right_is_usual, "{name}: {err}");
                    if right_is_usual {
                        assert_ne!(hint, AadHint::Unknown, "{name}: AAD hint missing");
                    }
                }
                DecryptError::Corrupted => assert!(
                    !crc_valid && !right_is_usual,
                    "{name} with AAD {wrong:?}: said corrupted"
                ),
                other => panic!("{name} with AAD {wrong:?}: {other}"),
            }
            // Tolerant mode accepts it exactly when the CRC vouches for the content.
            let tolerant = Decryptor::new(&key, wrong, false).decrypt(&frame, &mut plaintext);
            assert_eq!(tolerant.is_ok(), crc_valid, "{name}: tolerant mode");
        }

        // A wrong key: nothing readable.
        let mut wrong_key = *key.as_bytes();
        wrong_key[0] ^= 0x01;
        let err = Decryptor::new(&Key::from_bytes(wrong_key), aad.clone(), true)
            .decrypt(&frame, &mut plaintext)
            .unwrap_err();
        assert_eq!(err, DecryptError::WrongKey, "{name}");

        // A flipped ciphertext byte: corrupted, not "wrong key".
        let mut damaged = bytes.clone();
        let at = damaged.len() / 2;
        damaged[at] ^= 0x04;
        let damaged_frame = EncryptedFrame::parse(&damaged).unwrap();
        let err = Decryptor::new(&key, aad.clone(), true)
            .decrypt(&damaged_frame, &mut plaintext)
            .unwrap_err();
        assert_eq!(err, DecryptError::Corrupted, "{name}");

        // Through the whole decoder: accepted when the telegram's CRC is valid, else a CRC
        // rejection — never a telegram with a bad CRC.
        let mut decoder = Decoder::new(DecoderConfig::new(key).with_aad(aad));
        decoder.push(b"\r\n\xDB\x08noise");
        decoder.push(&bytes);
        let mut accepted = 0;
        let mut crc_rejected = 0;
        while let Some(result) = decoder.finish() {
            match result {
                Ok(decoded) => {
                    accepted += 1;
                    assert_eq!(decoded.raw, &bytes[..], "{name}");
                    assert_eq!(decoded.telegram.raw(), &expected[..], "{name}");
                    assert!(decoded.frame.unwrap().authenticated);
                }
                Err(Rejection::Telegram(TelegramError::CrcMismatch { .. })) => crc_rejected += 1,
                Err(other) => panic!("{name}: {other}"),
            }
        }
        assert_eq!(
            (accepted, crc_rejected),
            if crc_valid { (1, 0) } else { (0, 1) },
            "{name}"
        );
    }
}

#[test]
fn every_telegram_parses_with_the_manifest_crc_status_and_asserted_values() {
    for dir in data::dirs() {
        let checked = telegrams_in(&dir);
        // The repository's data carries about 1,400 asserted values: far fewer means the
        // expectation loader lost them.
        let least = if data::is_repo_dir(&dir) { 1000 } else { 1 };
        assert!(
            checked >= least,
            "{}: only {checked} values checked",
            dir.display()
        );
    }
}

/// Checks every telegram of `dir`; returns how many asserted values were checked.
fn telegrams_in(dir: &Path) -> usize {
    let manifest = manifest_crc(dir);
    let telegrams = files(dir, "telegrams", ".txt");
    let present: BTreeMap<String, ()> = telegrams
        .iter()
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), ()))
        .collect();
    let missing: Vec<&String> = manifest
        .keys()
        .filter(|f| !present.contains_key(*f))
        .collect();
    let unlisted: Vec<&String> = present
        .keys()
        .filter(|f| !manifest.contains_key(*f))
        .collect();
    assert!(
        missing.is_empty() && unlisted.is_empty(),
        "{}: telegrams listed in MANIFEST.md but missing: {missing:?}; present but not listed: {unlisted:?}",
        dir.display()
    );
    let mut failures = Vec::new();
    let mut checked = 0;
    for path in &telegrams {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = fs::read(path).unwrap();
        let crc_text = manifest
            .get(&name)
            .unwrap_or_else(|| panic!("{name} is not in MANIFEST.md"));
        let expected = expected_crc(crc_text);

        // CRC status as the manifest gives it.
        let lenient = parse_with(&bytes, ParseOptions::default().with_check_crc(false))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        match (&expected, lenient.crc(), parse(&bytes)) {
            (ExpectedCrc::Valid(_), CrcStatus::Valid, Ok(_)) => {}
            (ExpectedCrc::Absent, CrcStatus::Absent, Ok(t)) => assert!(t.is_terminated(), "{name}"),
            (ExpectedCrc::NoTerminator, CrcStatus::Absent, Ok(t)) => {
                assert!(!t.is_terminated(), "{name}")
            }
            (
                ExpectedCrc::Invalid { stated, computed },
                CrcStatus::Mismatch { .. },
                Err(TelegramError::CrcMismatch {
                    expected: e,
                    computed: c,
                }),
            ) => assert_eq!((e, c), (*stated, *computed), "{name}"),
            (expected, got, strict) => {
                panic!("{name}: manifest says {expected:?}, parsed {got:?} / {strict:?}")
            }
        }
        if let ExpectedCrc::Valid(crc) = expected {
            let raw = lenient.raw();
            let bang = raw.iter().rposition(|&b| b == b'!').unwrap();
            assert_eq!(
                smarty_p1::crc16_arc(&raw[..=bang]),
                crc,
                "{name}: CRC value"
            );
        }

        // What the sources assert.
        let expected_json = path.with_file_name(name.replace(".txt", ".expected.json"));
        if !expected_json.exists() {
            continue;
        }
        let e = expectations::load(&expected_json);
        if let Some(valid) = e.crc_valid {
            assert_eq!(
                lenient.crc() == CrcStatus::Valid,
                valid,
                "{name}: CRC validity"
            );
        }
        if let Some(header) = &e.header {
            assert_eq!(&lenient.header_str(), header, "{name}: header");
        }
        for check in &e.checks {
            checked += 1;
            if let Err(problem) = verify(&lenient, check) {
                failures.push(format!("{name}: {problem}\n    from {}", check.origin));
            }
        }
        for line in &e.raw_lines {
            let found = lenient
                .objects()
                .iter()
                .any(|o| o.line().starts_with(line.as_str()))
                || lenient.unknown_lines().contains(&line.as_bytes());
            if !found {
                failures.push(format!("{name}: line {line:?} not kept"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{}: {} of {checked} asserted values differ:\n{}",
        dir.display(),
        failures.len(),
        failures.join("\n")
    );
    checked
}

#[test]
fn every_terminated_telegram_is_found_by_the_framing() {
    for dir in data::dirs() {
        terminated_telegrams_in(&dir);
    }
}

fn terminated_telegrams_in(dir: &Path) {
    let manifest = manifest_crc(dir);
    for path in files(dir, "telegrams", ".txt") {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = fs::read(&path).unwrap();
        let expected = expected_crc(&manifest[&name]);
        let mut decoder = Decoder::new(DecoderConfig::default());
        // One byte at a time: the hardest chunking.
        for b in &bytes {
            decoder.push(std::slice::from_ref(b));
            while decoder.next().is_some() {}
        }
        while decoder.finish().is_some() {}
        let stats = *decoder.stats();
        // Every byte counted once: in the telegram, or as noise (a file may hold more).
        assert_eq!(
            stats.accepted_bytes + stats.rejected_bytes + stats.noise_bytes,
            bytes.len() as u64,
            "{name}: {stats:?}"
        );
        // Headers with control bytes or bytes above ASCII (Python sources turned `\2` into
        // 0x02) are found like any other.
        match expected {
            ExpectedCrc::Valid(_) | ExpectedCrc::Absent => {
                assert_eq!(stats.telegrams, 1, "{name}: {stats:?}")
            }
            ExpectedCrc::Invalid { .. } => {
                // Either the telegram is rejected for its CRC, or the file holds a telegram cut
                // short by the next one (the manifest's CRC spans both): the framing drops the
                // cut one and the next is judged on its own.
                let headers = bytes.windows(2).filter(|w| w == b"\n/").count();
                let crc = stats.rejected(smarty_p1::RejectReason::Crc);
                let truncated = stats.rejected(smarty_p1::RejectReason::Truncated);
                assert!(
                    (crc == 1 && stats.telegrams == 0) || (headers >= 1 && truncated >= 1),
                    "{name}: {stats:?}"
                )
            }
            ExpectedCrc::NoTerminator => assert_eq!(stats.telegrams, 0, "{name}: {stats:?}"),
        }
    }
}

fn decode_stream(bytes: &[u8], chunk: usize) -> (Vec<Vec<u8>>, smarty_p1::Stats) {
    let mut decoder = Decoder::new(DecoderConfig::default());
    let mut telegrams = Vec::new();
    for piece in bytes.chunks(chunk) {
        decoder.push(piece);
        while let Some(result) = decoder.next() {
            if let Ok(decoded) = result {
                telegrams.push(decoded.telegram.raw().to_vec());
            }
        }
    }
    while let Some(result) = decoder.finish() {
        if let Ok(decoded) = result {
            telegrams.push(decoded.telegram.raw().to_vec());
        }
    }
    (telegrams, *decoder.stats())
}

fn read(path: &str) -> Vec<u8> {
    data::read_repo(path)
}

#[test]
fn streams_decode_as_counted_in_the_manifest() {
    use smarty_p1::RejectReason::Crc;
    for chunk in [1, 7, 64, 4096, usize::MAX] {
        // 566 CRC-valid telegrams after a partial one.
        let (telegrams, stats) = decode_stream(&data::basjes_crlf(), chunk);
        assert_eq!(telegrams.len(), 566, "chunk {chunk}: {stats:?}");
        assert_eq!(stats.rejected_total(), 0, "chunk {chunk}: {stats:?}");

        // The same stream with its CR bytes lost: every telegram found, every CRC fails.
        let (telegrams, stats) = decode_stream(&read("streams/basjes_ttyUSB0_raw_lf.txt"), chunk);
        assert_eq!(
            (telegrams.len(), stats.rejected(Crc)),
            (0, 566),
            "chunk {chunk}"
        );
        let (_, stats) = decode_stream(&read("streams/basjes_ttyUSB0_mini_lf.txt"), chunk);
        assert_eq!(stats.rejected(Crc), 2, "chunk {chunk}");

        // A stray CRLF before the telegram.
        let (telegrams, _) =
            decode_stream(&read("streams/amshan_kamstrup_leading_crlf.bin"), chunk);
        assert_eq!(telegrams.len(), 1, "chunk {chunk}");

        // Noise with truncated headers between two valid telegrams: both survive.
        let valid = read("telegrams/dsmr5_isk.txt");
        let mut stream = valid.clone();
        stream.extend(read("streams/dsmr5_overflow.bin"));
        stream.extend(&valid);
        let (telegrams, stats) = decode_stream(&stream, chunk);
        let valid_telegram = parse(&valid).unwrap().raw().to_vec();
        assert_eq!(
            telegrams.iter().filter(|t| **t == valid_telegram).count(),
            2,
            "chunk {chunk}: {stats:?}"
        );
    }
    // The dsmr-rs stream: one complete LF-only telegram between fragments; it is the one the
    // source expects (its CRC fails as stored, LF only).
    let stream = read("streams/dsmr_rs_input1_lf.txt");
    let expected = read("streams/dsmr_rs_input1_lf.expected.txt");
    let mut framer = smarty_p1::framing::FrameDecoder::default();
    framer.push(&stream);
    let mut items = Vec::new();
    while let Some(event) = framer.finish() {
        if let smarty_p1::framing::Event::Item(item) = event {
            items.push(item.bytes().to_vec());
        }
    }
    assert_eq!(items.len(), 1, "{items:?}");
    let item = &items[0];
    assert_eq!(
        String::from_utf8_lossy(item).trim_end(),
        String::from_utf8_lossy(&expected).trim_end()
    );
}

/// The licences under which files may ship in `tests/data` (see its MANIFEST.md).
const REDISTRIBUTABLE: [&str; 5] = ["MIT", "ISC", "BSD-3-Clause", "Apache-2.0", "this project"];

#[test]
fn the_manifest_lists_every_data_file_with_a_licence_that_lets_it_ship() {
    let dir = data::repo_dir();
    let rows = data::manifest(&dir);
    let listed: BTreeMap<&str, &data::Row> = rows.iter().map(|r| (r.file.as_str(), r)).collect();
    assert!(
        listed.len() > 80,
        "MANIFEST.md lists {} files",
        listed.len()
    );
    // Every file is a listed one or a sibling of one (NAME.json, NAME.expected.json,
    // NAME.expected.txt).
    let mut unlisted = Vec::new();
    for sub in ["encrypted", "telegrams", "streams"] {
        for path in files(&dir, sub, "") {
            let name = format!("{sub}/{}", path.file_name().unwrap().to_string_lossy());
            let stem = name.split('.').next().unwrap();
            let covered = listed.contains_key(name.as_str())
                || listed.keys().any(|f| f.split('.').next() == Some(stem));
            if !covered {
                unlisted.push(name);
            }
        }
    }
    assert!(unlisted.is_empty(), "not in MANIFEST.md: {unlisted:?}");
    for (file, row) in &listed {
        assert!(dir.join(file).is_file(), "MANIFEST.md lists missing {file}");
        let licence = row.get("licence");
        assert!(
            REDISTRIBUTABLE.iter().any(|l| licence.contains(l)),
            "{file}: licence {licence:?} is not one that may ship here"
        );
    }
    // The files made here are what the manifest says they are.
    let athom = read("telegrams/athom_dsmr_luxembourgh_spec_example.txt");
    let header_end = athom.iter().position(|&b| b == b'\n').unwrap() + 1;
    let mut restored = athom[..header_end].to_vec();
    restored.extend_from_slice(b"\r\n");
    restored.extend_from_slice(&athom[header_end..]);
    restored.extend_from_slice(b"\r\n");
    assert_eq!(
        restored,
        read("telegrams/athom_lux_spec_example_blank_line_restored.txt")
    );
}
