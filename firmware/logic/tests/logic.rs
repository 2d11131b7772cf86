//! Host tests of the dongle's logic on the core's real frames and telegrams.

use serde_json::{Value as Json, json};
use smarty_dongle::api::{self, BrokerState, Status};
use smarty_dongle::diagnosis::{self, Diagnosis, Observation};
use smarty_dongle::discovery;
use smarty_dongle::p1::{self, Publication, PublishConfig, QoS, Reader, Snapshot};
use smarty_dongle::provisioning::{Action, Event, Policy, State, next, next_with};
use smarty_dongle::ring::Ring;
use smarty_dongle::settings::{
    MqttProtocol, MqttSettings, Secret, SecretKey, Settings, SettingsError,
};
use smarty_dongle::setup_form::{self, Field, escape_html, parse_form, parse_key, parse_pairs};
use smarty_p1::{Aad, AadHint, DecoderConfig, Key, RejectReason, Rejection};

const REAL_FRAME_HEX: &str = include_str!(
    "../../../crates/smarty-p1/tests/data/encrypted/nexxtlab_lux_t210d_fc0005a8e3.hex"
);
const REAL_KEY: &str = "D491470F47126332B07D1923B3504188";
const TELEGRAM_2026: &[u8] = include_bytes!(
    "../../../crates/smarty-p1/tests/data/telegrams/meterlogger_lux5_253663629_d_2026.txt"
);
const TELEGRAM_KAIFA: &[u8] =
    include_bytes!("../../../crates/smarty-p1/tests/data/telegrams/dsmr5_kaifa.txt");
const GATEWAY_REAL: &str = include_str!("data/nexxtlab_gateway_read.json");
const GATEWAY_2026: &str = include_str!("data/meterlogger_2026_gateway_read.json");
const GATEWAY_KAIFA: &str = include_str!("data/dsmr5_kaifa_gateway_read.json");

fn real_frame() -> Vec<u8> {
    smarty_p1::hex::decode(REAL_FRAME_HEX).unwrap()
}

fn real_key() -> Key {
    REAL_KEY.parse().unwrap()
}

/// Everything `bytes` gives when pushed in the pieces `cuts` makes (one ms apart).
fn read(config: DecoderConfig, pieces: &[&[u8]]) -> (Vec<Snapshot>, Vec<Rejection>, Reader) {
    let mut reader = Reader::new(config);
    let (mut ok, mut bad) = (vec![], vec![]);
    for (i, piece) in pieces.iter().enumerate() {
        reader.push(piece, i as u64);
        while let Some(r) = reader.poll() {
            match r {
                Ok(s) => ok.push(s),
                Err(e) => bad.push(e),
            }
        }
    }
    (ok, bad, reader)
}

fn read_whole(config: DecoderConfig, bytes: &[u8]) -> Snapshot {
    let (mut ok, bad, _) = read(config, &[bytes]);
    assert_eq!((ok.len(), bad.len()), (1, 0), "{bad:?}");
    ok.remove(0)
}

fn real_snapshot() -> Snapshot {
    read_whole(DecoderConfig::new(real_key()), &real_frame())
}

/// Splits `bytes` at pseudo-random places (a fixed LCG: reproducible).
fn random_pieces(bytes: &[u8], seed: u64, max: usize) -> Vec<&[u8]> {
    let mut state = seed;
    let mut out = vec![];
    let mut rest = bytes;
    while !rest.is_empty() {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let n = ((state >> 33) as usize % max + 1).min(rest.len());
        out.push(&rest[..n]);
        rest = &rest[n..];
    }
    out
}

fn same_telegram(a: &Snapshot, b: &Snapshot) -> bool {
    (&a.values, &a.state_json, &a.raw) == (&b.values, &b.state_json, &b.raw)
}

// ---------------------------------------------------------------- p1

/// The telegram stream (TCP port 2001) sends the plaintext telegram of each snapshot: for the
/// encrypted frame the decrypted telegram (`/` to the CRC line), for a plain one its bytes.
#[test]
fn snapshots_keep_the_plaintext_telegram() {
    let real = real_snapshot();
    assert!(
        real.telegram.starts_with(b"/Lux5"),
        "{:?}",
        &real.telegram[..8]
    );
    let text = core::str::from_utf8(&real.telegram).unwrap();
    let crc_line = text.trim_end().rsplit('\n').next().unwrap();
    assert!(
        crc_line.starts_with('!') && crc_line.len() == 5,
        "{crc_line:?}"
    );
    assert_ne!(real.telegram, real.raw);
    let plain = read_whole(DecoderConfig::default(), TELEGRAM_2026);
    assert!(TELEGRAM_2026.starts_with(&plain.telegram));
    assert!(plain.telegram.starts_with(b"/") && plain.telegram.len() + 4 >= TELEGRAM_2026.len());
}

#[test]
fn the_state_json_is_the_gateways_byte_for_byte() {
    assert_eq!(real_snapshot().state_json, GATEWAY_REAL.trim_end());
    let plain = read_whole(DecoderConfig::default(), TELEGRAM_2026);
    assert_eq!(plain.state_json, GATEWAY_2026.trim_end());
    let kaifa = read_whole(DecoderConfig::default(), TELEGRAM_KAIFA);
    assert_eq!(kaifa.state_json, GATEWAY_KAIFA.trim_end());
}

/// The value topics of the real frame, as `smarty read --format text` names them (copied from
/// the gateway's output) with the payloads the gateway's MQTT output publishes.
#[test]
fn value_names_and_payloads_are_the_gateways() {
    let expected = [
        ("p1_version", "42"),
        ("timestamp", "2018-01-30T10:21:22+01:00"),
        ("meter_id", "SAG1030700114004"),
        ("energy_import_kwh", "6.695"),
        ("energy_export_kwh", "0.025"),
        ("reactive_energy_import_kvarh", "0.818"),
        ("reactive_energy_export_kvarh", "2.745"),
        ("power_import_kw", "0.000"),
        ("power_export_kw", "0.000"),
        ("reactive_power_import_kvar", "0.000"),
        ("reactive_power_export_kvar", "0.007"),
        ("power_threshold_kva", "77.376"),
        ("breaker_state", "1"),
        ("power_failures", "69"),
        ("voltage_sags_l1", "44"),
        ("voltage_sags_l2", "3"),
        ("voltage_sags_l3", "2"),
        ("voltage_swells_l1", "0"),
        ("voltage_swells_l2", "0"),
        ("voltage_swells_l3", "0"),
        ("text_message", ""),
        ("text_message_2", ""),
        ("text_message_3", ""),
        ("text_message_4", ""),
        ("text_message_5", ""),
        ("current_l1_a", "0"),
        ("current_l2_a", "0"),
        ("current_l3_a", "0"),
    ];
    let snapshot = real_snapshot();
    let config = PublishConfig::new("smarty", "home");
    let messages = p1::publications(&snapshot, &config);
    assert_eq!(messages.len(), expected.len() + 1);
    assert_eq!(messages[0].topic, "smarty/home/state");
    assert_eq!(messages[0].payload, GATEWAY_REAL.trim_end().as_bytes());
    for (m, (name, payload)) in messages[1..].iter().zip(expected) {
        assert_eq!(m.topic, format!("smarty/home/{name}"));
        assert_eq!(String::from_utf8_lossy(&m.payload), payload, "{name}");
        assert!(m.retain && m.qos == QoS::AtMostOnce);
    }
    // Every name in the gateway's JSON of the telegram is a value topic here, and back.
    let gateway: Json = serde_json::from_str(GATEWAY_REAL).unwrap();
    let names: Vec<&str> = gateway["objects"]
        .as_object()
        .unwrap()
        .values()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    let ours: Vec<&str> = snapshot.values.iter().map(|v| v.name.as_str()).collect();
    let mut a = names.clone();
    let mut b = ours.clone();
    a.sort_unstable();
    b.sort_unstable();
    assert_eq!(a, b);
}

#[test]
fn gas_meter_and_per_phase_names_of_a_2026_telegram() {
    let s = read_whole(DecoderConfig::default(), TELEGRAM_2026);
    let gateway: Json = serde_json::from_str(GATEWAY_2026).unwrap();
    let mut theirs: Vec<String> = gateway["objects"]
        .as_object()
        .unwrap()
        .values()
        .filter(|o| !o["name"].is_null())
        .filter(|o| {
            !(o.get("values").is_some() || o["value"].is_null() && o.get("text").is_none())
                || o.get("timestamp").is_some_and(|t| !t.is_null())
        })
        .map(|o| o["name"].as_str().unwrap().to_owned())
        .collect();
    let mut ours: Vec<String> = s.values.iter().map(|v| v.name.clone()).collect();
    theirs.sort();
    ours.sort();
    assert_eq!(ours, theirs);
    assert_eq!(
        s.value("mbus1_gas_m3").unwrap().data.to_string(),
        "14239.771"
    );
    assert_eq!(s.value("voltage_l1_v").unwrap().unit_symbol(), Some("V"));
    assert!(s.has_per_phase_values());
    assert!(!real_snapshot().has_per_phase_values());
}

#[test]
fn any_chunking_with_noise_and_a_cut_frame_gives_the_same_telegrams() {
    let frame = real_frame();
    let reference = real_snapshot();
    let mut stream = b"\x00\xFFnoise\xDB\x08 garbage".to_vec();
    stream.extend_from_slice(&frame);
    stream.extend_from_slice(&frame[..300]); // cut short: the meter's next frame follows
    stream.extend_from_slice(&frame);
    stream.extend_from_slice(b"trailing");
    let mut cases: Vec<Vec<&[u8]>> = (1..=13).map(|n| stream.chunks(n).collect()).collect();
    cases.push(stream.chunks(646).collect());
    cases.push(vec![&stream[..]]);
    for seed in 0..40 {
        cases.push(random_pieces(&stream, seed, 200));
    }
    for pieces in cases {
        let (ok, bad, reader) = read(DecoderConfig::new(real_key()), &pieces);
        assert_eq!(ok.len(), 2, "{} pieces: {bad:?}", pieces.len());
        assert!(ok.iter().all(|s| same_telegram(s, &reference)));
        assert!(!bad.is_empty(), "the cut frame is rejected");
        assert_eq!(reader.stats().telegrams, 2);
        assert_eq!(reader.bytes_received(), stream.len() as u64);
    }
}

#[test]
fn plaintext_telegrams_in_any_chunks() {
    let reference = read_whole(DecoderConfig::default(), TELEGRAM_KAIFA);
    let mut stream = b"\r\n!!junk/".to_vec();
    for _ in 0..3 {
        stream.extend_from_slice(TELEGRAM_KAIFA);
        stream.extend_from_slice(TELEGRAM_2026);
    }
    for seed in 0..30 {
        let pieces = random_pieces(&stream, seed, 64);
        let (ok, _, _) = read(DecoderConfig::default(), &pieces);
        assert_eq!(ok.len(), 6, "seed {seed}");
        assert!(same_telegram(&ok[0], &reference));
    }
}

#[test]
fn raw_frames_decoded_off_and_availability() {
    let snapshot = real_snapshot();
    let mut config = PublishConfig::new("p1/", "garage");
    config.decoded = false;
    config.raw = true;
    let messages = p1::publications(&snapshot, &config);
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].topic, "p1/garage/raw");
    assert_eq!(messages[0].payload, REAL_FRAME_HEX.trim().as_bytes());
    assert!(!messages[0].retain);
    let online = p1::availability(&config, true);
    assert_eq!(
        (online.topic.as_str(), &online.payload[..], online.retain),
        ("p1/garage/availability", &b"online"[..], true)
    );
    assert_eq!(p1::availability(&config, false).payload, b"offline");
}

#[test]
fn the_status_message_has_counters_and_the_diagnosis() {
    let frame = real_frame();
    let (_, _, mut reader) = read(
        DecoderConfig::new(Key::from_bytes([1; 16])),
        &[&frame, &frame],
    );
    let diagnosis = reader.diagnose(5);
    let m = p1::status_publication(
        &PublishConfig::new("smarty", "home"),
        reader.stats(),
        &diagnosis,
    );
    assert_eq!(m.topic, "smarty/home/status");
    let json: Json = serde_json::from_slice(&m.payload).unwrap();
    assert_eq!(json["diagnosis"], "wrong_key");
    assert_eq!(json["telegrams"], 0);
    assert!(json["rejected"]["wrong_key"].as_u64().unwrap() >= 2);
}

// ---------------------------------------------------------------- diagnosis

#[test]
fn a_wrong_key_is_told() {
    let frame = real_frame();
    let (ok, bad, mut reader) = read(
        DecoderConfig::new(Key::from_bytes([0x42; 16])),
        &[&frame, &frame, &frame],
    );
    assert!(ok.is_empty());
    assert!(bad.iter().any(|r| r.reason() == RejectReason::WrongKey));
    let d = reader.diagnose(5_000);
    assert_eq!(d, Diagnosis::WrongKey);
    assert!(d.to_string().starts_with("Wrong key"));
}

#[test]
fn a_wrong_authentication_key_is_told_apart_from_a_wrong_key() {
    let frame = real_frame();
    let config = DecoderConfig::new(real_key()).with_aad(Aad::AuthKey([0xAB; 16]));
    let (ok, _, mut reader) = read(config, &[&frame]);
    assert!(ok.is_empty());
    let d = reader.diagnose(1_000);
    assert_eq!(
        d,
        Diagnosis::WrongAuthenticationKey {
            hint: AadHint::LuxembourgDefault
        }
    );
    assert!(
        d.to_string()
            .contains("Luxembourg's default authentication key")
    );
}

#[test]
fn no_key_basic_readout_and_working() {
    let frame = real_frame();
    let (_, _, mut reader) = read(DecoderConfig::default(), &[&frame]);
    assert_eq!(reader.diagnose(100), Diagnosis::NoKey);
    let (_, _, mut reader) = read(DecoderConfig::new(real_key()), &[&frame]);
    let d = reader.diagnose(100);
    assert_eq!(d, Diagnosis::BasicReadout);
    assert!(
        d.to_string()
            .contains("Ask the grid operator for the full read-out")
    );
    assert!(d.is_ok());
    let (_, _, mut reader) = read(DecoderConfig::default(), &[TELEGRAM_2026]);
    assert_eq!(reader.diagnose(100), Diagnosis::Working);
    // A minute later without a telegram, and the line silent: data stopped.
    assert_eq!(
        reader.diagnose(100 + diagnosis::STALE_MS),
        Diagnosis::DataStopped
    );
}

#[test]
fn silence_noise_and_damaged_telegrams() {
    let mut reader = Reader::new(DecoderConfig::default());
    reader.start(0);
    assert_eq!(reader.diagnose(1_000), Diagnosis::Waiting);
    let d = reader.diagnose(diagnosis::SILENCE_MS);
    assert_eq!(d, Diagnosis::NoData);
    assert!(d.to_string().contains("check the cable"));

    // Inverted or wrong-baud bytes: nothing like a telegram.
    let mut reader = Reader::new(DecoderConfig::default());
    for t in 0..30u64 {
        reader.push(
            &[0x7E, 0x81, 0x00, 0xF0, 0x3C][..(t % 5 + 1) as usize],
            t * 1_000,
        );
        while reader.poll().is_some() {}
    }
    let d = reader.diagnose(30_000);
    assert_eq!(d, Diagnosis::NoFrames);
    assert!(d.to_string().contains("inverted"));

    // A flipped digit in a value: the CRC fails, every time.
    let mut bad = TELEGRAM_KAIFA.to_vec();
    let at = bad.windows(4).position(|w| w == b"1.8.").unwrap() + 8;
    bad[at] = if bad[at] == b'1' { b'2' } else { b'1' };
    let (ok, rejected, mut reader) = read(DecoderConfig::default(), &[&bad, &bad]);
    assert!(ok.is_empty(), "{rejected:?}");
    let d = reader.diagnose(5_000);
    assert_eq!(d, Diagnosis::Damaged);
    assert!(d.to_string().contains("wiring"));
}

#[test]
fn the_most_frequent_rejection_explains() {
    let mut o = Observation::default();
    o.running_ms = 100_000;
    o.bytes_received = 10_000;
    o.since_last_byte_ms = Some(1_000);
    o.rejected_since_telegram.add(RejectReason::Truncated);
    o.rejected_since_telegram.add(RejectReason::WrongKey);
    // A tie: the key first.
    assert_eq!(diagnosis::diagnose(&o), Diagnosis::WrongKey);
    o.rejected_since_telegram.add(RejectReason::Truncated);
    assert_eq!(diagnosis::diagnose(&o), Diagnosis::CutShort);
    let mut o = Observation::default();
    o.rejected_since_telegram.add(RejectReason::Corrupted);
    assert_eq!(diagnosis::diagnose(&o), Diagnosis::Corrupted);
    let codes: Vec<&str> = [
        Diagnosis::Working,
        Diagnosis::NoData,
        Diagnosis::WrongAuthenticationKey {
            hint: AadHint::Unknown,
        },
    ]
    .iter()
    .map(Diagnosis::code)
    .collect();
    assert_eq!(codes, ["working", "no_data", "wrong_authentication_key"]);
}

// ---------------------------------------------------------------- settings

fn full_settings() -> Settings {
    let mut s = Settings::default();
    s.wifi_ssid = "Wohnung 3 — ünïcode".into();
    s.wifi_password = Secret::new("correct horse battery");
    s.meter_key = Some(SecretKey::new(*real_key().as_bytes()));
    s.auth_key = Some(SecretKey::new([0xAA; 16]));
    s.mqtt = {
        let mut m = MqttSettings::default();
        m.host = "broker.lan".into();
        m.port = 8883;
        m.user = "dongle".into();
        m.password = Secret::new("mqtt-pass");
        m.prefix = "p1/home".into();
        m.protocol = MqttProtocol::V5;
        m.publish_decoded = false;
        m.publish_raw = true;
        m.discovery = false;
        m
    };
    s.device_name = "garage".into();
    s
}

#[test]
fn settings_round_trip_every_field() {
    let full = full_settings();
    let record = full.encode();
    assert_eq!(Settings::decode(&record), Ok(Some(full.clone())));
    // With the rest of a flash page after it.
    let mut page = record.clone();
    page.resize(4096, 0xFF);
    assert_eq!(Settings::decode(&page), Ok(Some(full.clone())));
    // Each field on its own differs from the default and survives.
    let d = Settings::default();
    let variants: [fn(&mut Settings); 14] = [
        |s| s.wifi_ssid = "x".into(),
        |s| s.wifi_password = Secret::new("12345678"),
        |s| s.meter_key = Some(SecretKey::new([1; 16])),
        |s| s.auth_key = Some(SecretKey::new([2; 16])),
        |s| s.mqtt.host = "h".into(),
        |s| s.mqtt.port = 1,
        |s| s.mqtt.user = "u".into(),
        |s| s.mqtt.password = Secret::new("p"),
        |s| s.mqtt.prefix = "q".into(),
        |s| s.mqtt.protocol = MqttProtocol::V5,
        |s| s.mqtt.publish_decoded = false,
        |s| s.mqtt.publish_raw = true,
        |s| s.mqtt.discovery = false,
        |s| s.device_name = "n".into(),
    ];
    for (i, change) in variants.iter().enumerate() {
        let mut s = d.clone();
        s.wifi_ssid = "net".into();
        let before = s.clone();
        change(&mut s);
        assert_ne!(s, before, "variant {i}");
        assert_eq!(Settings::decode(&s.encode()), Ok(Some(s)), "variant {i}");
    }
}

#[test]
fn erased_flash_is_not_set_and_damage_is_refused() {
    assert_eq!(Settings::decode(&[0xFF; 4096]), Ok(None));
    assert_eq!(Settings::decode(&[]), Ok(None));
    assert_eq!(Settings::decode(&[0; 64]), Err(SettingsError::NotARecord));
    let record = full_settings().encode();
    for bit in 0..record.len() * 8 {
        let mut flipped = record.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        assert!(Settings::decode(&flipped).is_err(), "bit {bit} flipped");
    }
    assert_eq!(
        Settings::decode(&record[..record.len() - 1]),
        Err(SettingsError::Truncated)
    );
}

/// A record of another format version, with a valid CRC.
fn with_version(record: &[u8], version: u16) -> Vec<u8> {
    let mut r = record[..record.len() - 4].to_vec();
    r[4..6].copy_from_slice(&version.to_le_bytes());
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(&r);
    r.extend_from_slice(&crc.to_le_bytes());
    r
}

#[test]
fn other_format_versions_are_refused_with_a_clear_error() {
    let record = full_settings().encode();
    let old = Settings::decode(&with_version(&record, 0)).unwrap_err();
    assert_eq!(old, SettingsError::OldVersion { found: 0 });
    assert!(old.to_string().contains("set the dongle up again"));
    let new = Settings::decode(&with_version(&record, 2)).unwrap_err();
    assert_eq!(new, SettingsError::NewVersion { found: 2 });
    assert!(new.to_string().contains("update the firmware"));
}

#[test]
fn secrets_are_redacted_in_debug() {
    let text = format!("{:?}", full_settings());
    for secret in ["correct horse", "mqtt-pass", "D4", "d4", "170"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert!(text.contains("<redacted>") && text.contains("broker.lan"));
}

#[test]
fn settings_give_the_decoder_and_publish_configs() {
    let mut s = full_settings();
    s.auth_key = None;
    let snapshot = read_whole(s.decoder_config(), &real_frame());
    assert_eq!(snapshot.meter_id.as_deref(), Some("SAG1030700114004"));
    let p = s.publish_config();
    assert_eq!(p.topic("state"), "p1/home/garage/state");
    assert!(p.raw && !p.decoded);
}

// ---------------------------------------------------------------- set-up form

const GOOD: &str = "wifi_ssid=Home+Net&wifi_password=12345678&meter_key=&auth_key=\
&mqtt_broker=192.168.1.5&mqtt_port=&mqtt_user=&mqtt_password=&mqtt_prefix=smarty\
&mqtt_protocol=3.1.1&publish_decoded=on&discovery=on&device_name=home";

fn with(field: &str, value: &str) -> String {
    let mut out: Vec<String> = GOOD
        .split('&')
        .filter(|p| !p.starts_with(&format!("{field}=")))
        .map(String::from)
        .collect();
    out.push(format!("{field}={value}"));
    out.join("&")
}

fn error_of(body: &str, field: Field) -> Option<String> {
    match parse_form(body.as_bytes(), None) {
        Ok(_) => None,
        Err(e) => e.of(field).map(String::from),
    }
}

#[test]
fn the_form_decodes_plus_and_percent() {
    let s = parse_form(GOOD.as_bytes(), None).unwrap();
    assert_eq!(s.wifi_ssid, "Home Net");
    assert_eq!(s.mqtt.port, 1883);
    assert_eq!(s.meter_key, None);
    assert!(s.mqtt.publish_decoded && s.mqtt.discovery && !s.mqtt.publish_raw);
    let s = parse_form(with("wifi_ssid", "Caf%C3%A9%20%2B%26%3D").as_bytes(), None).unwrap();
    assert_eq!(s.wifi_ssid, "Café +&=");
    assert_eq!(
        parse_pairs(b"a=%zz%4&b=%41"),
        [("a".into(), "%zz%4".into()), ("b".into(), "A".into())]
    );
    assert_eq!(setup_form::decode_component(b"%FF+x"), "\u{FFFD} x");
}

#[test]
fn wifi_rules() {
    assert!(error_of(&with("wifi_ssid", ""), Field::WifiSsid).is_some());
    assert!(error_of(&with("wifi_ssid", &"a".repeat(32)), Field::WifiSsid).is_none());
    assert!(error_of(&with("wifi_ssid", &"a".repeat(33)), Field::WifiSsid).is_some());
    // 32 bytes, not characters: 11 × "é" (2 bytes) is 22 bytes, 17 × is 34.
    assert!(error_of(&with("wifi_ssid", &"%C3%A9".repeat(16)), Field::WifiSsid).is_none());
    assert!(error_of(&with("wifi_ssid", &"%C3%A9".repeat(17)), Field::WifiSsid).is_some());
    for (password, ok) in [("", true), ("1234567", false), ("12345678", true)] {
        let e = error_of(&with("wifi_password", password), Field::WifiPassword);
        assert_eq!(e.is_none(), ok, "{password:?}: {e:?}");
    }
    assert!(error_of(&with("wifi_password", &"p".repeat(63)), Field::WifiPassword).is_none());
    let e = error_of(&with("wifi_password", &"p".repeat(64)), Field::WifiPassword).unwrap();
    assert!(e.contains("8 to 63") && e.contains("64"), "{e}");
}

#[test]
fn keys_as_printed_on_paper() {
    let expected = *real_key().as_bytes();
    for text in [
        "D491470F47126332B07D1923B3504188",
        "d491470f47126332b07d1923b3504188",
        "D4 91 47 0F 47 12 63 32 B0 7D 19 23 B3 50 41 88",
        "D4:91:47:0F:47:12:63:32:B0:7D:19:23:B3:50:41:88",
        "D491-470F-4712-6332-B07D-1923-B350-4188",
        " 0xD491470F47126332B07D1923B3504188 ",
    ] {
        assert_eq!(parse_key(text).unwrap().expose(), &expected, "{text}");
    }
    let s = parse_form(
        with(
            "meter_key",
            "d4+91+47+0f%3A47-12+63+32+B0+7D+19+23+B3+50+41+88",
        )
        .as_bytes(),
        None,
    )
    .unwrap();
    assert_eq!(s.meter_key.unwrap().expose(), &expected);
    let short = error_of(&with("meter_key", "D491470F"), Field::MeterKey).unwrap();
    assert!(
        short.contains("32 hex digits") && short.contains('8'),
        "{short}"
    );
    let bad = error_of(
        &with("auth_key", "G491470F47126332B07D1923B3504188"),
        Field::AuthKey,
    );
    assert!(bad.unwrap().contains("'G'"));
}

#[test]
fn broker_port_prefix_protocol_and_name_rules() {
    let s = parse_form(
        with("mqtt_broker", "mqtt://Broker.LAN:1884/").as_bytes(),
        None,
    )
    .unwrap();
    assert_eq!((s.mqtt.host.as_str(), s.mqtt.port), ("broker.lan", 1884));
    let s = parse_form(
        format!("{}&mqtt_port=1999", with("mqtt_broker", "nas")).as_bytes(),
        None,
    )
    .unwrap();
    assert_eq!(s.mqtt.port, 1999);
    for broker in [
        "",
        "mqtts://x",
        "http://x",
        "bad host",
        "x:0",
        "x:70000",
        "-x",
    ] {
        assert!(
            error_of(&with("mqtt_broker", broker), Field::MqttBroker).is_some(),
            "{broker}"
        );
    }
    assert!(
        error_of(&with("mqtt_broker", "mqtts://x"), Field::MqttBroker)
            .unwrap()
            .contains("TLS")
    );
    assert!(error_of(&with("mqtt_port", "abc"), Field::MqttPort).is_some());
    for prefix in ["a/%2B/b", "a/%23", "%24SYS", "/a", "a/", "a//b"] {
        assert!(
            error_of(&with("mqtt_prefix", prefix), Field::MqttPrefix).is_some(),
            "{prefix}"
        );
    }
    assert!(error_of(&with("mqtt_prefix", "p1/home"), Field::MqttPrefix).is_none());
    let s = parse_form(with("mqtt_prefix", "").as_bytes(), None).unwrap();
    assert_eq!(s.mqtt.prefix, "smarty");
    let s = parse_form(with("mqtt_protocol", "5").as_bytes(), None).unwrap();
    assert_eq!(s.mqtt.protocol, MqttProtocol::V5);
    assert!(error_of(&with("mqtt_protocol", "4.2"), Field::MqttProtocol).is_some());
    for name in ["Home", "a b", "ümlaut", &"n".repeat(33)] {
        assert!(
            error_of(&with("device_name", name), Field::DeviceName).is_some(),
            "{name}"
        );
    }
    // Several errors at once, each under its field.
    let errors = parse_form(b"wifi_ssid=&mqtt_broker=&mqtt_prefix=%23", None).unwrap_err();
    let fields: Vec<Field> = errors.errors.iter().map(|e| e.field).collect();
    assert_eq!(
        fields,
        [Field::WifiSsid, Field::MqttBroker, Field::MqttPrefix]
    );
    assert!(errors.to_string().starts_with("wifi_ssid: "));
}

/// A form with errors comes back with what was typed (secrets excepted) and the messages.
#[test]
fn a_form_with_errors_comes_back_as_typed() {
    let body = with("mqtt_prefix", "a/%23").replace("wifi_ssid=Home+Net", "wifi_ssid=Garage");
    let (typed, errors) = setup_form::parse_form_as_typed(body.as_bytes(), None);
    assert_eq!(errors.errors.len(), 1, "{errors}");
    assert!(errors.of(Field::MqttPrefix).is_some());
    assert_eq!(parse_form(body.as_bytes(), None), Err(errors.clone()));
    let page = setup_form::setup_page(&typed, &errors, false);
    assert!(
        page.contains("value=\"Garage\"") && page.contains("value=\"a/#\""),
        "{page}"
    );
    assert!(!page.contains("12345678"));
    let (typed, errors) =
        setup_form::parse_form_as_typed(b"wifi_ssid=x&mqtt_broker=bad%20host", None);
    assert_eq!(typed.mqtt.host, "bad host");
    assert!(errors.of(Field::MqttBroker).is_some());
    let (_, none) = setup_form::parse_form_as_typed(GOOD.as_bytes(), None);
    assert!(none.errors.is_empty());
}

#[test]
fn editing_keeps_stored_secrets_unless_cleared() {
    let stored = full_settings();
    let body = with("mqtt_user", "dongle").replace("wifi_password=12345678", "wifi_password=");
    let s = parse_form(body.as_bytes(), Some(&stored)).unwrap();
    assert_eq!(s.wifi_password, stored.wifi_password);
    assert_eq!(s.meter_key, stored.meter_key);
    assert_eq!(s.auth_key, stored.auth_key);
    assert_eq!(s.mqtt.password, stored.mqtt.password);
    let body = format!("{body}&clear_meter_key=on&clear_auth_key=on&wifi_open=on");
    let s = parse_form(body.as_bytes(), Some(&stored)).unwrap();
    assert_eq!((s.meter_key, s.auth_key), (None, None));
    assert!(s.wifi_password.is_empty());
}

#[test]
fn pages_escape_what_they_show() {
    assert_eq!(escape_html("plain"), "plain");
    let mut s = full_settings();
    s.wifi_ssid = "\"><script>alert(1)</script>".into();
    let errors = parse_form(b"wifi_ssid=&mqtt_broker=%3Cb%3E", None).unwrap_err();
    let page = setup_form::setup_page(&s, &errors, true);
    assert!(!page.contains("<script>") && !page.contains("<b>"));
    assert!(page.contains("&quot;&gt;&lt;script&gt;"));
    assert!(!page.contains("correct horse") && !page.contains("mqtt-pass"));
    assert!(page.contains("name=\"clear_meter_key\""));
    let status = setup_form::status_page(&Diagnosis::NoData, &[("Meter", "<SAG>")]);
    assert!(status.contains("&lt;SAG&gt;") && status.contains("check the cable"));
}

// ---------------------------------------------------------------- provisioning

#[test]
fn first_boot_opens_the_access_point_and_saving_joins() {
    let (s, a) = next(
        State::Start,
        Event::Booted {
            has_settings: false,
        },
    );
    assert_eq!(
        (s, a),
        (
            State::SetupAp {
                has_settings: false
            },
            vec![Action::StartAccessPoint]
        )
    );
    // No timer without settings: the access point stays.
    assert_eq!(next(s, Event::TimerFired), (s, vec![]));
    let (s, a) = next(s, Event::SettingsSaved);
    assert_eq!(s, State::Joining { failures: 0 });
    assert_eq!(
        a,
        [
            Action::CancelTimer,
            Action::StopAccessPoint,
            Action::JoinWifi
        ]
    );
    let (s, a) = next(State::Start, Event::Booted { has_settings: true });
    assert_eq!(
        (s, a),
        (State::Joining { failures: 0 }, vec![Action::JoinWifi])
    );
}

#[test]
fn joined_then_broker_then_online() {
    let (s, a) = next(State::Joining { failures: 3 }, Event::WifiJoined);
    assert_eq!(
        (s, a),
        (
            State::ConnectingBroker { failures: 0 },
            vec![Action::ConnectBroker]
        )
    );
    let (s, a) = next(s, Event::BrokerConnected);
    assert_eq!((s, a), (State::Online, vec![]));
}

#[test]
fn wifi_failures_back_off_then_open_the_access_point_with_settings_kept() {
    let policy = Policy::default();
    let mut state = State::Joining { failures: 0 };
    for n in 1..policy.max_wifi_failures {
        let (s, a) = next(state, Event::WifiFailed);
        assert_eq!(s, State::WaitingWifi { failures: n });
        assert_eq!(
            a,
            [Action::StartTimer {
                ms: policy.backoff_ms(n)
            }]
        );
        let (s, a) = next(s, Event::TimerFired);
        assert_eq!(
            (s, a),
            (State::Joining { failures: n }, vec![Action::JoinWifi])
        );
        state = s;
    }
    let (s, a) = next(state, Event::WifiFailed);
    assert_eq!(s, State::SetupAp { has_settings: true });
    assert_eq!(
        a,
        [
            Action::LeaveWifi,
            Action::StartAccessPoint,
            Action::StartTimer {
                ms: policy.ap_timeout_ms
            }
        ]
    );
    // After the timeout: joining again.
    let (s2, a) = next(s, Event::TimerFired);
    assert_eq!(
        (s2, a),
        (
            State::Joining { failures: 0 },
            vec![Action::StopAccessPoint, Action::JoinWifi]
        )
    );
    // Or when the user saves.
    let (s3, _) = next(s, Event::SettingsSaved);
    assert_eq!(s3, State::Joining { failures: 0 });
    // A custom policy.
    let mut quick = Policy::default();
    quick.max_wifi_failures = 1;
    let (s, _) = next_with(&quick, State::Joining { failures: 0 }, Event::WifiFailed);
    assert_eq!(s, State::SetupAp { has_settings: true });
}

#[test]
fn lost_wifi_and_broker_reconnect_with_backoff() {
    let p = Policy::default();
    for from in [
        State::Online,
        State::ConnectingBroker { failures: 2 },
        State::WaitingBroker { failures: 2 },
    ] {
        let (s, a) = next(from, Event::WifiLost);
        assert_eq!(s, State::WaitingWifi { failures: 0 }, "{from:?}");
        assert_eq!(
            a,
            [
                Action::CancelTimer,
                Action::DisconnectBroker,
                Action::StartTimer { ms: 1_000 }
            ]
        );
    }
    let (s, a) = next(State::Online, Event::BrokerLost);
    assert_eq!(
        (s, a),
        (
            State::WaitingBroker { failures: 1 },
            vec![Action::StartTimer { ms: 1_000 }]
        )
    );
    let (s, a) = next(s, Event::TimerFired);
    assert_eq!(
        (s, a),
        (
            State::ConnectingBroker { failures: 1 },
            vec![Action::ConnectBroker]
        )
    );
    let (s, a) = next(s, Event::BrokerFailed);
    assert_eq!(
        (s, a),
        (
            State::WaitingBroker { failures: 2 },
            vec![Action::StartTimer { ms: 2_000 }]
        )
    );
    let mut state = s;
    for _ in 0..10 {
        state = next(next(state, Event::TimerFired).0, Event::BrokerFailed).0;
    }
    assert_eq!(next(state, Event::TimerFired).1, [Action::ConnectBroker]);
    let State::WaitingBroker { failures } = state else {
        panic!("{state:?}")
    };
    assert_eq!(p.backoff_ms(failures), p.backoff_max_ms);
    let (s, _) = next(next(state, Event::TimerFired).0, Event::BrokerConnected);
    assert_eq!(s, State::Online);
}

#[test]
fn the_button() {
    let long = Event::ButtonReleased { held_ms: 5_000 };
    let short = Event::ButtonReleased { held_ms: 200 };
    for from in [
        State::Online,
        State::Joining { failures: 1 },
        State::WaitingWifi { failures: 1 },
        State::ConnectingBroker { failures: 0 },
        State::WaitingBroker { failures: 3 },
    ] {
        let (s, a) = next(from, long);
        assert_eq!(
            s,
            State::SetupAp {
                has_settings: false
            },
            "{from:?}"
        );
        assert!(
            a.contains(&Action::EraseSettings)
                && a.ends_with(&[Action::EraseSettings, Action::StartAccessPoint]),
            "{a:?}"
        );
        let (s, a) = next(from, short);
        assert_eq!(s, State::SetupAp { has_settings: true });
        assert!(!a.contains(&Action::EraseSettings));
        assert!(
            a.contains(&Action::LeaveWifi) && a.contains(&Action::StartAccessPoint),
            "{a:?}"
        );
    }
    let (s, a) = next(State::Online, short);
    assert_eq!(
        a[..3],
        [
            Action::CancelTimer,
            Action::DisconnectBroker,
            Action::LeaveWifi
        ]
    );
    // In the access point: a long press erases (the access point stays up), a short one goes
    // back to joining when there are settings.
    let (s2, a) = next(s, long);
    assert_eq!(
        (s2, a),
        (
            State::SetupAp {
                has_settings: false
            },
            vec![Action::CancelTimer, Action::EraseSettings]
        )
    );
    let (s3, a) = next(s, short);
    assert_eq!(
        (s3, a),
        (
            State::Joining { failures: 0 },
            vec![
                Action::CancelTimer,
                Action::StopAccessPoint,
                Action::JoinWifi
            ]
        )
    );
    assert_eq!(next(s2, short), (s2, vec![]));
    assert_eq!(next(State::Start, short), (State::Start, vec![]));
}

#[test]
fn stray_events_change_nothing() {
    for (state, event) in [
        (State::Online, Event::TimerFired),
        (State::Online, Event::WifiJoined),
        (State::Joining { failures: 0 }, Event::BrokerLost),
        (State::Joining { failures: 0 }, Event::WifiLost),
        (
            State::SetupAp { has_settings: true },
            Event::BrokerConnected,
        ),
        (State::Start, Event::TimerFired),
        (State::WaitingWifi { failures: 1 }, Event::WifiFailed),
    ] {
        assert_eq!(next(state, event), (state, vec![]), "{state:?} {event:?}");
    }
    let (s, a) = next(State::Online, Event::SettingsSaved);
    assert_eq!(s, State::Joining { failures: 0 });
    assert_eq!(
        a,
        [
            Action::CancelTimer,
            Action::DisconnectBroker,
            Action::LeaveWifi,
            Action::JoinWifi
        ]
    );
    assert_eq!(State::Online.as_str(), "online");
}

// ---------------------------------------------------------------- discovery

fn config_of(m: &Publication) -> Json {
    serde_json::from_slice(&m.payload).unwrap()
}

#[test]
fn discovery_is_the_gateways_shape() {
    let snapshot = real_snapshot();
    let config = PublishConfig::new("smarty", "home");
    let messages = discovery::discovery_messages(&snapshot, &config, "homeassistant");
    assert_eq!(messages.len(), snapshot.values.len());
    let energy = &messages[3];
    assert_eq!(
        energy.topic,
        "homeassistant/sensor/smarty_sag1030700114004/energy_import_kwh/config"
    );
    assert!(energy.retain);
    assert_eq!(
        config_of(energy),
        json!({
            "name": "Energy import",
            "unique_id": "smarty_sag1030700114004_energy_import_kwh",
            "state_topic": "smarty/home/energy_import_kwh",
            "unit_of_measurement": "kWh",
            "device_class": "energy",
            "state_class": "total_increasing",
            "availability": [{"topic": "smarty/home/availability"}],
            "availability_mode": "all",
            "device": {
                "identifiers": ["smarty_sag1030700114004"],
                "name": "Smarty home",
                "manufacturer": "Sagemcom",
                "serial_number": "SAG1030700114004",
                "model": "Lux5\\253663629_D",
                "sw_version": "42",
            },
            "origin": {"name": "smarty-dongle", "sw_version": smarty_dongle::VERSION},
        })
    );
    let by_name = |name: &str| {
        let v = snapshot.value(name).unwrap();
        config_of(&discovery::discovery_message(
            &snapshot,
            &config,
            "homeassistant",
            v,
        ))
    };
    let reactive = by_name("reactive_power_export_kvar");
    assert_eq!(
        (
            &reactive["name"],
            &reactive["unit_of_measurement"],
            &reactive["device_class"],
            &reactive["state_class"]
        ),
        (
            &json!("Reactive power export"),
            &json!("kvar"),
            &json!("reactive_power"),
            &json!("measurement")
        )
    );
    let threshold = by_name("power_threshold_kva");
    assert_eq!(threshold["device_class"], "apparent_power");
    assert_eq!(threshold["entity_category"], "diagnostic");
    assert!(threshold.get("state_class").is_none());
    let current = by_name("current_l1_a");
    assert_eq!(
        (&current["name"], &current["device_class"]),
        (&json!("Current L1"), &json!("current"))
    );
    let id = by_name("meter_id");
    assert_eq!(
        (&id["name"], &id["entity_category"]),
        (&json!("Meter ID"), &json!("diagnostic"))
    );
    assert!(id.get("unit_of_measurement").is_none());
    assert_eq!(by_name("timestamp")["device_class"], "timestamp");
    assert_eq!(by_name("power_failures")["state_class"], "total_increasing");
    assert!(by_name("text_message").get("entity_category").is_none());
    assert_eq!(by_name("p1_version")["name"], "P1 version");
}

#[test]
fn an_m_bus_gas_meter_is_a_device_of_its_own() {
    let snapshot = read_whole(DecoderConfig::default(), TELEGRAM_2026);
    let config = PublishConfig::new("smarty", "home");
    let gas = snapshot.value("mbus1_gas_m3").unwrap();
    let m = discovery::discovery_message(&snapshot, &config, "ha/", gas);
    assert_eq!(
        m.topic,
        "ha/sensor/smarty_sag1030700012701/mbus1_gas_m3/config"
    );
    let c = config_of(&m);
    assert_eq!(c["name"], "M-Bus 1 gas");
    assert_eq!(
        (&c["unit_of_measurement"], &c["device_class"]),
        (&json!("m³"), &json!("gas"))
    );
    assert_eq!(
        c["device"],
        json!({
            "identifiers": ["smarty_sag1030700012701_mbus1"],
            "name": "Smarty home M-Bus 1",
            "via_device": "smarty_sag1030700012701",
            "serial_number": "FLO182370120350",
            "model": "M-Bus gas meter",
        })
    );
    let voltage = config_of(&discovery::discovery_message(
        &snapshot,
        &config,
        "ha",
        snapshot.value("voltage_l1_v").unwrap(),
    ));
    assert_eq!(
        (&voltage["name"], &voltage["device_class"]),
        (&json!("Voltage L1"), &json!("voltage"))
    );
    // A meter without an id: keyed by its name.
    let kaifa = read_whole(DecoderConfig::default(), TELEGRAM_KAIFA);
    let key = discovery::device_key(&kaifa, &PublishConfig::new("smarty", "My-Meter"));
    assert!(kaifa.meter_id.is_some() || key == "my_meter");
}

// ---------------------------------------------------------------- api, ring

#[test]
fn the_api_json() {
    let snapshot = real_snapshot();
    let stats = smarty_p1::Stats::default();
    let mut status = Status::new(3_600_500, State::Online, &stats, Diagnosis::BasicReadout);
    status.wifi_ssid = Some("home \"net\"");
    status.wifi_rssi_dbm = Some(-61);
    status.broker = BrokerState::Connected;
    status.last_telegram_ms_ago = Some(4_200);
    let json: Json = serde_json::from_str(&api::status_json(&status)).unwrap();
    assert_eq!(json["uptime_s"], 3600);
    assert_eq!(
        json["wifi"],
        json!({"ssid": "home \"net\"", "rssi_dbm": -61})
    );
    assert_eq!(
        (&json["state"], &json["broker"]),
        (&json!("online"), &json!("connected"))
    );
    assert_eq!(json["p1"]["last_telegram_s_ago"], 4);
    assert_eq!(json["diagnosis"]["code"], "basic_readout");
    assert_eq!(json["diagnosis"]["ok"], true);
    assert_eq!(json["firmware"], smarty_dongle::VERSION);
    let idle = Status::new(
        0,
        State::SetupAp {
            has_settings: false,
        },
        &stats,
        Diagnosis::Waiting,
    );
    let json: Json = serde_json::from_str(&api::status_json(&idle)).unwrap();
    assert_eq!(json["wifi"], json!({"ssid": null, "rssi_dbm": null}));

    let json: Json = serde_json::from_str(&api::telegram_json(Some(&snapshot), 9_999)).unwrap();
    assert_eq!(json["age_s"], 9);
    assert_eq!(
        json["values"]["energy_import_kwh"],
        json!({"value": 6.695, "unit": "kWh"})
    );
    assert_eq!(
        json["values"]["reactive_power_export_kvar"],
        json!({"value": 0.007, "unit": "kvar"})
    );
    assert_eq!(
        json["values"]["meter_id"],
        json!({"text": "SAG1030700114004"})
    );
    assert_eq!(
        json["values"]["timestamp"],
        json!({"time": "2018-01-30T10:21:22+01:00"})
    );
    assert_eq!(
        json["telegram"],
        serde_json::from_str::<Json>(GATEWAY_REAL).unwrap()
    );
    assert_eq!(api::telegram_json(None, 0), "{\"telegram\":null}");
}

fn publication(topic: &str, payload_len: usize) -> Publication {
    Publication::new(
        topic.into(),
        vec![b'x'; payload_len],
        false,
        QoS::AtMostOnce,
    )
}

#[test]
fn the_ring_drops_the_oldest_within_its_budgets() {
    let mut ring = Ring::new(3, 100);
    for i in 0..5 {
        ring.push(publication(&format!("t{i}"), 10));
    }
    assert_eq!((ring.len(), ring.dropped(), ring.bytes()), (3, 2, 36));
    assert_eq!(ring.front().unwrap().topic, "t2");
    // The byte budget: an 82-byte one pushes out two of 12 (the count alone would take one).
    assert_eq!(ring.push(publication("big", 79)), 2);
    assert_eq!((ring.len(), ring.bytes(), ring.dropped()), (2, 94, 4));
    // Larger than the whole budget: dropped itself.
    assert_eq!(ring.push(publication("huge", 200)), 1);
    assert_eq!((ring.len(), ring.dropped()), (2, 5));
    // Put back at the front when not sent.
    let p = ring.pop().unwrap();
    assert_eq!(p.topic, "t4");
    ring.push_front(p);
    assert_eq!(ring.front().unwrap().topic, "t4");
    ring.push_front(publication("again", 60));
    assert_eq!(ring.front().unwrap().topic, "again");
    assert!(ring.bytes() <= 100);
    ring.clear();
    assert!(ring.is_empty() && ring.bytes() == 0);
    // Every message of the real telegram in a 2 KB queue: the newest are kept.
    let snapshot = real_snapshot();
    let messages = p1::publications(&snapshot, &PublishConfig::new("smarty", "home"));
    let mut ring = Ring::new(64, 2048);
    for m in messages.iter().cloned() {
        ring.push(m);
    }
    assert!(ring.bytes() <= 2048 && ring.dropped() >= 1);
    assert_eq!(ring.front().unwrap().topic, "smarty/home/p1_version");
}

// ---------------------------------------------------------------- mqtt

#[test]
fn connect_options_follow_the_settings_and_the_build() {
    use smarty_dongle::mqtt::{ConnectOptions, MqttError, PROTOCOL};
    let mut s = full_settings();
    s.mqtt.protocol = PROTOCOL;
    let options = ConnectOptions::new(&s, "smarty-garage-a1b2c3").unwrap();
    assert_eq!(options.will_topic, "p1/home/garage/availability");
    assert_eq!(options.user, "dongle");
    assert!(options.config().is_ok());
    assert_eq!(
        ConnectOptions::new(&s, &"x".repeat(65)),
        Err(MqttError::ClientIdTooLong)
    );
    let other = match PROTOCOL {
        MqttProtocol::V311 => MqttProtocol::V5,
        _ => MqttProtocol::V311,
    };
    s.mqtt.protocol = other;
    let e = ConnectOptions::new(&s, "x").unwrap_err();
    assert_eq!(e, MqttError::ProtocolNotBuilt { wanted: other });
    assert!(e.to_string().contains(PROTOCOL.as_str()));
}
