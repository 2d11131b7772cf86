//! A household behind a Smarty meter, for the tests over a history: plaintext telegrams in the
//! layout of the meter's full firmware (CRC included), with gas and water meters on M-Bus,
//! stored the way `smarty import` stores them (`Reading::from_telegram`), the last one made
//! live as `smarty run` would (a status and a telegram event in the [`LiveState`]).
//!
//! The consumption follows the hours of a day (a base load, a morning and an evening peak,
//! a cooking peak above the reference power, solar export around noon) with a little noise
//! from a seeded generator: the same history every time.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::SystemTime;

use jiff::{Timestamp, Zoned};
use smarty_model::event::{MeterEvent, MeterStatus, TelegramEvent};
use smarty_model::live::LiveState;
use smarty_model::time::meter_zone;
use smarty_p1::hex::upper;
use smarty_p1::{Decoder, DecoderConfig};
use smarty_store::{Reading, Store};

/// The meter id the household's meter sends.
pub const METER_ID: &str = "SAG1030700100001";

/// The meter's registers and the state of its noise.
pub struct Household {
    import_wh: f64,
    export_wh: f64,
    reactive_import_varh: f64,
    reactive_export_varh: f64,
    gas_m3: f64,
    water_m3: f64,
    noise: u64,
}

/// What the meter measures at one moment, per phase.
struct Sample {
    net_kw: [f64; 3],
    reactive_kvar: [f64; 3],
    voltage_v: [f64; 3],
}

impl Household {
    pub fn new() -> Household {
        Household {
            import_wh: 6_123_456.0,
            export_wh: 1_234_567.0,
            reactive_import_varh: 345_678.0,
            reactive_export_varh: 12_345.0,
            gas_m3: 14_239.771,
            water_m3: 512.25,
            noise: 0x9E37_79B9_7F4A_7C15,
        }
    }

    /// A number in 0..1 (xorshift).
    fn noise(&mut self) -> f64 {
        self.noise ^= self.noise << 13;
        self.noise ^= self.noise >> 7;
        self.noise ^= self.noise << 17;
        (self.noise >> 11) as f64 / (1u64 << 53) as f64
    }

    /// What the meter measures at local time `t`.
    fn sample(&mut self, t: &Zoned) -> Sample {
        let hour = f64::from(t.hour()) + f64::from(t.minute()) / 60.0;
        let mut load = 0.3 + 0.2 * self.noise();
        if (6.5..8.5).contains(&hour) {
            load += 1.2;
        }
        if (17.0..22.0).contains(&hour) {
            load += 1.5;
        }
        // Cooking: above the reference power (3 kW) for half an hour.
        if (19.0..19.5).contains(&hour) {
            load += 2.5;
        }
        let solar = if (9.0..17.0).contains(&hour) {
            3.0 * (std::f64::consts::PI * (hour - 9.0) / 8.0).sin()
        } else {
            0.0
        };
        let shares = [0.5, 0.3, 0.2];
        let net_kw = shares.map(|share| load * share - solar / 3.0);
        Sample {
            net_kw,
            reactive_kvar: shares.map(|share| 0.1 * load * share),
            voltage_v: net_kw.map(|net| 229.0 + 4.0 * self.noise() - 2.0 * net),
        }
    }

    /// The telegram the meter sends at `t`, `interval_s` after the previous one.
    pub fn telegram(&mut self, t: &Zoned, interval_s: f64) -> Vec<u8> {
        let s = self.sample(t);
        let total: f64 = s.net_kw.iter().sum();
        let q: f64 = s.reactive_kvar.iter().sum();
        let hours = interval_s / 3600.0;
        self.import_wh += total.max(0.0) * 1000.0 * hours;
        self.export_wh += (-total).max(0.0) * 1000.0 * hours;
        self.reactive_import_varh += q.max(0.0) * 1000.0 * hours;
        self.reactive_export_varh += (-q).max(0.0) * 1000.0 * hours;
        if (6..22).contains(&t.hour()) {
            self.gas_m3 += 0.1 * hours;
        }
        self.water_m3 += 0.005 * hours;

        let mut text = String::with_capacity(1600);
        let mut line = |l: String| {
            text.push_str(&l);
            text.push_str("\r\n");
        };
        line("/Lux5\\253663629_D".into());
        line(String::new());
        line("1-3:0.2.8(42)".into());
        line(format!("0-0:1.0.0({})", meter_time(t)));
        line(format!("0-0:42.0.0({})", upper(METER_ID.as_bytes())));
        let kwh = |wh: f64| fixed(wh / 1000.0, 6, 3);
        line(format!("1-0:1.8.0({}*kWh)", kwh(self.import_wh)));
        line(format!("1-0:2.8.0({}*kWh)", kwh(self.export_wh)));
        line(format!(
            "1-0:3.8.0({}*kvarh)",
            kwh(self.reactive_import_varh)
        ));
        line(format!(
            "1-0:4.8.0({}*kvarh)",
            kwh(self.reactive_export_varh)
        ));
        line(format!("1-0:1.7.0({}*kW)", fixed(total, 2, 3)));
        line(format!("1-0:2.7.0({}*kW)", fixed(-total, 2, 3)));
        line(format!("1-0:3.7.0({}*kvar)", fixed(q, 2, 3)));
        line(format!("1-0:4.7.0({}*kvar)", fixed(-q, 2, 3)));
        line("0-0:17.0.0(027.6*kVA)".into());
        let apparent = (total * total + q * q).sqrt();
        let (s_import, s_export) = if total >= 0.0 {
            (apparent, 0.0)
        } else {
            (0.0, apparent)
        };
        line(format!("1-0:9.7.0({}*kVA)", fixed(s_import, 2, 3)));
        line(format!("1-0:10.7.0({}*kVA)", fixed(s_export, 2, 3)));
        line("1-1:31.4.0(040*A)(-040*A)".into());
        line("0-0:96.3.10(1)".into());
        line("0-1:96.3.10(0)".into());
        line("0-2:96.3.10(0)".into());
        line("0-0:96.7.21(00012)".into());
        for (code, n) in [("32.32.0", 4), ("52.32.0", 2), ("72.32.0", 3)] {
            line(format!("1-0:{code}({n:05})"));
        }
        for code in ["32.36.0", "52.36.0", "72.36.0"] {
            line(format!("1-0:{code}(00000)"));
        }
        for code in ["96.13.0", "96.13.2", "96.13.3", "96.13.4", "96.13.5"] {
            line(format!("0-0:{code}()"));
        }
        for (p, code) in ["32.7.0", "52.7.0", "72.7.0"].iter().enumerate() {
            line(format!(
                "1-0:{code}({}*V)",
                fixed(s.voltage_v[p].round(), 3, 1)
            ));
        }
        for (p, code) in ["31.7.0", "51.7.0", "71.7.0"].iter().enumerate() {
            let amps = (s.net_kw[p].abs() * 1000.0 / s.voltage_v[p]).round();
            line(format!("1-0:{code}({}*A)", fixed(amps, 3, 0)));
        }
        let phases = |codes: [&str; 3], value: &dyn Fn(usize) -> f64, unit: &str| {
            codes
                .iter()
                .enumerate()
                .map(|(p, code)| format!("1-0:{code}({}*{unit})", fixed(value(p), 2, 3)))
                .collect::<Vec<_>>()
        };
        for l in [
            phases(["21.7.0", "41.7.0", "61.7.0"], &|p| s.net_kw[p], "kW"),
            phases(["22.7.0", "42.7.0", "62.7.0"], &|p| -s.net_kw[p], "kW"),
            phases(
                ["23.7.0", "43.7.0", "63.7.0"],
                &|p| s.reactive_kvar[p],
                "kvar",
            ),
            phases(
                ["24.7.0", "44.7.0", "64.7.0"],
                &|p| -s.reactive_kvar[p],
                "kvar",
            ),
        ]
        .into_iter()
        .flatten()
        {
            line(l);
        }
        // The M-Bus meters report on the hour, with that time.
        let hour = t
            .with()
            .minute(0)
            .second(0)
            .subsec_nanosecond(0)
            .build()
            .expect("the start of the hour");
        for (channel, device_type, id, value) in [
            (1, 3, "FLO182370120350", self.gas_m3),
            (2, 7, "ELS353589980300", self.water_m3),
        ] {
            line(format!("0-{channel}:24.1.0({device_type:03})"));
            line(format!("0-{channel}:96.1.0({})", upper(id.as_bytes())));
            line(format!(
                "0-{channel}:24.2.1({})({}*m3)",
                meter_time(&hour),
                fixed(value, 5, 3)
            ));
            line(format!("0-{channel}:24.4.0(1)"));
        }
        text.push('!');
        let crc = smarty_p1::crc16_arc(text.as_bytes());
        let _ = write!(text, "{crc:04X}\r\n");
        text.into_bytes()
    }
}

/// `YYMMDDhhmmssX`, X = S in summer time, W in winter time.
fn meter_time(t: &Zoned) -> String {
    let flag = if t.offset().seconds() >= 7200 {
        'S'
    } else {
        'W'
    };
    format!(
        "{:02}{:02}{:02}{:02}{:02}{:02}{flag}",
        t.year() % 100,
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// `value` with `int` integer digits and `dec` decimals, zero-padded, never negative.
fn fixed(value: f64, int: usize, dec: usize) -> String {
    let width = if dec == 0 { int } else { int + 1 + dec };
    format!("{:0width$.dec$}", value.max(0.0))
}

/// `count` telegrams of meter `meter`, one every `interval_s` from `start` (Unix seconds),
/// written into `store`; returns the last telegram decoded.
pub fn fill(store: &Store, meter: &str, start: i64, count: i64, interval_s: i64) -> Vec<u8> {
    let zone = meter_zone();
    let name: Arc<str> = Arc::from(meter);
    let mut house = Household::new();
    let mut writer = store.writer().unwrap();
    let mut last = Vec::new();
    for i in 0..count {
        let t = Timestamp::from_second(start + i * interval_s)
            .unwrap()
            .to_zoned(zone.clone());
        last = house.telegram(&t, interval_s as f64);
        let telegram = smarty_p1::parse(&last).expect("a valid telegram");
        let (reading, mbus) = Reading::from_telegram(&name, &telegram);
        writer.push(reading.expect("a reading"));
        for record in mbus {
            writer.push_mbus(record);
        }
        if i % 1000 == 999 {
            writer.flush().unwrap();
        }
    }
    writer.flush().unwrap();
    last
}

/// Makes `telegram` the latest of meter `meter`, connected, as `smarty run` does when it
/// accepts it; returns its event.
pub fn make_live(live: &LiveState, meter: &str, telegram: &[u8]) -> Arc<TelegramEvent> {
    let event = telegram_event(meter, telegram);
    let mut decoder = Decoder::new(DecoderConfig::default());
    decoder.push(telegram);
    decoder.finish().unwrap().unwrap();
    live.update(&MeterEvent::Status(Arc::new(MeterStatus {
        meter: Arc::from(meter),
        source: "tcp://127.0.0.1:2001".into(),
        connected: true,
        last_telegram: Some(event.received),
        stats: *decoder.stats(),
        reconnects: 0,
        last_error: None,
    })));
    live.update(&MeterEvent::Telegram(Arc::clone(&event)));
    event
}

/// `telegram` of meter `meter` as the service hands it to the outputs, received now.
pub fn telegram_event(meter: &str, telegram: &[u8]) -> Arc<TelegramEvent> {
    let mut decoder = Decoder::new(DecoderConfig::default());
    decoder.push(telegram);
    let decoded = decoder.finish().unwrap().unwrap();
    Arc::new(TelegramEvent::new(
        &Arc::from(meter),
        &decoded,
        SystemTime::now(),
    ))
}

/// One telegram of the household, sent now.
pub fn telegram_now() -> Vec<u8> {
    Household::new().telegram(&Timestamp::now().to_zoned(meter_zone()), 10.0)
}
