//! Writes the telegram a Smarty meter sends, in the layouts of real firmware (LU113 Table 3.1
//! and the captures of reference §5): fixed-width numbers, hex octet strings, CRC16/ARC.

use std::fmt::Write as _;

use jiff::Zoned;
use smarty_p1::hex::upper;

use super::household::{Household, SubMeter};
use crate::cli::Firmware;

/// The meter's identity.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Identification line without `/`.
    pub header: String,
    /// The logical device name `0-0:42.0.0` (16 ASCII characters).
    pub meter_id: String,
    /// Gas meter id `0-1:96.1.0`.
    pub gas_id: String,
    /// Water meter id `0-2:96.1.0`.
    pub water_id: String,
}

/// `YYMMDDhhmmssX` with X = S in summer time, W in winter time.
pub fn meter_time(t: &Zoned) -> String {
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

/// `value` with `int` integer digits and `dec` decimals, zero-padded (format Fn(x,y)).
fn fixed(value: f64, int: usize, dec: usize) -> String {
    let width = if dec == 0 { int } else { int + 1 + dec };
    format!("{:0width$.dec$}", value.max(0.0))
}

/// The telegram for the household's current state at `now`, CRC included.
pub fn write(house: &Household, id: &Identity, firmware: Firmware, now: &Zoned) -> Vec<u8> {
    let s = &house.sample;
    let total = s.total_kw();
    let q = s.total_kvar();
    let mut t = String::with_capacity(1600);
    let mut line = |text: String| {
        t.push_str(&text);
        t.push_str("\r\n");
    };
    line(format!("/{}", id.header));
    line(String::new());
    line("1-3:0.2.8(42)".into());
    line(format!("0-0:1.0.0({})", meter_time(now)));
    line(format!("0-0:42.0.0({})", upper(id.meter_id.as_bytes())));
    let kwh = |wh: f64| fixed(wh / 1000.0, 6, 3);
    let unit = |u: &str| {
        if firmware == Firmware::Early {
            String::new()
        } else {
            format!("*{u}")
        }
    };
    line(format!("1-0:1.8.0({}*kWh)", kwh(house.import_wh)));
    line(format!("1-0:2.8.0({}*kWh)", kwh(house.export_wh)));
    line(format!(
        "1-0:3.8.0({}*kvarh)",
        kwh(house.reactive_import_varh)
    ));
    line(format!(
        "1-0:4.8.0({}*kvarh)",
        kwh(house.reactive_export_varh)
    ));
    line(format!("1-0:1.7.0({}*kW)", fixed(total, 2, 3)));
    line(format!("1-0:2.7.0({}*kW)", fixed(-total, 2, 3)));
    line(format!("1-0:3.7.0({}{})", fixed(q, 2, 3), unit("kvar")));
    line(format!("1-0:4.7.0({}{})", fixed(-q, 2, 3), unit("kvar")));
    match firmware {
        Firmware::Early => line("0-0:17.0.0(77.376)".into()),
        Firmware::Basic => line("0-0:17.0.0(27.600*kVA)".into()),
        Firmware::Full => {
            line("0-0:17.0.0(027.6*kVA)".into());
            let apparent = |p: f64, q: f64| (p * p + q * q).sqrt();
            let (s_import, s_export) = if total >= 0.0 {
                (apparent(total, q), 0.0)
            } else {
                (0.0, apparent(total, q))
            };
            line(format!("1-0:9.7.0({}*kVA)", fixed(s_import, 2, 3)));
            line(format!("1-0:10.7.0({}*kVA)", fixed(s_export, 2, 3)));
            line("1-1:31.4.0(040*A)(-040*A)".into());
        }
    }
    line("0-0:96.3.10(1)".into());
    if firmware == Firmware::Full {
        line("0-1:96.3.10(0)".into());
        line("0-2:96.3.10(0)".into());
    }
    if firmware != Firmware::Basic {
        line("0-0:96.7.21(00012)".into());
        for (code, n) in [("32.32.0", 4), ("52.32.0", 2), ("72.32.0", 3)] {
            line(format!("1-0:{code}({n:05})"));
        }
        for code in ["32.36.0", "52.36.0", "72.36.0"] {
            line(format!("1-0:{code}(00000)"));
        }
    }
    for code in ["96.13.0", "96.13.2", "96.13.3", "96.13.4", "96.13.5"] {
        line(format!("0-0:{code}()"));
    }
    let amps = |p: usize| (s.net_kw(p).abs() * 1000.0 / s.voltage_v[p]).round();
    match firmware {
        Firmware::Basic => {}
        Firmware::Early => {
            for (p, code) in ["31.7.0", "51.7.0", "71.7.0"].iter().enumerate() {
                line(format!("1-0:{code}({}*A)", fixed(amps(p), 3, 0)));
            }
        }
        Firmware::Full => {
            for (p, code) in ["32.7.0", "52.7.0", "72.7.0"].iter().enumerate() {
                line(format!(
                    "1-0:{code}({}*V)",
                    fixed(s.voltage_v[p].round(), 3, 1)
                ));
            }
            for (p, code) in ["31.7.0", "51.7.0", "71.7.0"].iter().enumerate() {
                line(format!("1-0:{code}({}*A)", fixed(amps(p), 3, 0)));
            }
            let phases = |c: [&str; 3], f: &dyn Fn(usize) -> f64, u: &str| {
                c.iter()
                    .enumerate()
                    .map(|(p, code)| format!("1-0:{code}({}*{u})", fixed(f(p), 2, 3)))
                    .collect::<Vec<_>>()
            };
            let lines = [
                phases(["21.7.0", "41.7.0", "61.7.0"], &|p| s.net_kw(p), "kW"),
                phases(["22.7.0", "42.7.0", "62.7.0"], &|p| -s.net_kw(p), "kW"),
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
            ];
            for l in lines.into_iter().flatten() {
                line(l);
            }
            if let Some(gas) = &house.gas {
                mbus(&mut line, 1, 3, &id.gas_id, gas);
            }
            if let Some(water) = &house.water {
                mbus(&mut line, 2, 7, &id.water_id, water);
            }
        }
    }
    t.push('!');
    let crc = smarty_p1::crc16_arc(t.as_bytes());
    let _ = write!(t, "{crc:04X}\r\n");
    t.into_bytes()
}

fn mbus(line: &mut impl FnMut(String), channel: u8, device_type: u8, id: &str, meter: &SubMeter) {
    line(format!("0-{channel}:24.1.0({device_type:03})"));
    line(format!("0-{channel}:96.1.0({})", upper(id.as_bytes())));
    match &meter.reported {
        Some((value, at)) => line(format!(
            "0-{channel}:24.2.1({})({}*m3)",
            meter_time(at),
            fixed(*value, 5, 3)
        )),
        None => line(format!("0-{channel}:24.2.1(632525252525S)(00000.000)")),
    }
    line(format!("0-{channel}:24.4.0(1)"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> Identity {
        Identity {
            header: "Lux5\\253663629_D".into(),
            meter_id: "SAG1030700123456".into(),
            gas_id: "FLO182370120350".into(),
            water_id: "ELS353589980300".into(),
        }
    }

    #[test]
    fn every_firmware_writes_a_valid_telegram() {
        let now: Zoned = "2026-04-03T17:54:31+02:00[Europe/Luxembourg]"
            .parse()
            .unwrap();
        for firmware in [Firmware::Full, Firmware::Basic, Firmware::Early] {
            let mut house = Household::new(1, 4.0, true, true);
            house.step(&now, 10.0);
            let bytes = write(&house, &identity(), firmware, &now);
            let telegram = smarty_p1::parse(&bytes).expect("CRC and syntax valid");
            assert!(
                telegram.unknown_lines().is_empty(),
                "{firmware:?}: {:?}",
                telegram.unknown_lines()
            );
            assert_eq!(telegram.meter_id().as_deref(), Some("SAG1030700123456"));
            assert_eq!(
                telegram.timestamp().unwrap().to_string(),
                "2026-04-03T17:54:31+02:00"
            );
            let r = telegram.readings();
            assert!(r.energy_import_kwh.is_some());
            if firmware == Firmware::Full {
                assert!(r.voltage_v.iter().all(Option::is_some));
                assert_eq!(r.mbus.len(), 2);
            }
        }
        assert_eq!(fixed(6.695, 6, 3), "000006.695");
        assert_eq!(fixed(0.614, 2, 3), "00.614");
        assert_eq!(fixed(233.0, 3, 1), "233.0");
        assert_eq!(fixed(4.0, 3, 0), "004");
    }
}
