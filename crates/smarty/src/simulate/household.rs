//! A household behind a virtual Smarty meter: base load, appliances, solar panels, gas and
//! water, in a physically consistent way (energy counters integrate the power drawn).

use std::f64::consts::PI;

use jiff::Zoned;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// An appliance that is on.
#[derive(Debug, Clone)]
struct Running {
    phase: usize,
    kw: f64,
    remaining_s: f64,
}

/// What the meter measures at one instant.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Active power drawn per phase by the household (kW).
    pub load_kw: [f64; 3],
    /// Solar production per phase (kW).
    pub solar_kw: [f64; 3],
    /// Voltage per phase (V).
    pub voltage_v: [f64; 3],
    /// Reactive power per phase (kvar), positive = imported.
    pub reactive_kvar: [f64; 3],
}

impl Sample {
    /// Net active power per phase (kW); negative exports.
    pub fn net_kw(&self, phase: usize) -> f64 {
        self.load_kw[phase] - self.solar_kw[phase]
    }

    /// Net active power of all phases (kW).
    pub fn total_kw(&self) -> f64 {
        (0..3).map(|p| self.net_kw(p)).sum()
    }

    /// Net reactive power of all phases (kvar).
    pub fn total_kvar(&self) -> f64 {
        self.reactive_kvar.iter().sum()
    }
}

/// An M-Bus sub-meter (gas or water) that reports every 5 minutes.
#[derive(Debug, Clone)]
pub struct SubMeter {
    /// Running total (m3).
    pub total_m3: f64,
    /// Last reported value and its capture time.
    pub reported: Option<(f64, Zoned)>,
}

/// The household state.
#[derive(Debug)]
pub struct Household {
    rng: StdRng,
    solar_kwp: f64,
    cloud: f64,
    drift: [f64; 3],
    running: Vec<Running>,
    /// Imported active energy (Wh).
    pub import_wh: f64,
    /// Exported active energy (Wh).
    pub export_wh: f64,
    /// Imported reactive energy (varh).
    pub reactive_import_varh: f64,
    /// Exported reactive energy (varh).
    pub reactive_export_varh: f64,
    /// Gas meter on M-Bus channel 1.
    pub gas: Option<SubMeter>,
    /// Water meter on M-Bus channel 2.
    pub water: Option<SubMeter>,
    /// The last sample.
    pub sample: Sample,
}

/// An appliance type: power, run time, phase, starts per day and the hours it is used.
struct Appliance {
    kw: f64,
    minutes: f64,
    phase: usize,
    per_day: f64,
    hours: (u8, u8),
}

const fn appliance(
    kw: f64,
    minutes: f64,
    phase: usize,
    per_day: f64,
    hours: (u8, u8),
) -> Appliance {
    Appliance {
        kw,
        minutes,
        phase,
        per_day,
        hours,
    }
}

const APPLIANCES: [Appliance; 5] = [
    appliance(2.0, 3.0, 0, 4.0, (6, 22)),   // kettle
    appliance(2.4, 45.0, 1, 0.8, (17, 20)), // oven
    appliance(2.1, 25.0, 2, 0.5, (8, 21)),  // washing machine (heating phase)
    appliance(1.9, 30.0, 2, 0.6, (19, 23)), // dishwasher
    appliance(1.2, 20.0, 1, 1.5, (6, 23)),  // hair dryer, iron, vacuum…
];

impl Household {
    /// A household with `solar_kwp` of panels, optional gas and water meters.
    pub fn new(seed: u64, solar_kwp: f64, gas: bool, water: bool) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let import_wh = rng.random_range(2_000_000.0..12_000_000.0);
        let export_wh = if solar_kwp > 0.0 {
            rng.random_range(500_000.0..6_000_000.0)
        } else {
            0.0
        };
        let sub = |rng: &mut StdRng, range: std::ops::Range<f64>| SubMeter {
            total_m3: rng.random_range(range),
            reported: None,
        };
        let gas = gas.then(|| sub(&mut rng, 1_000.0..15_000.0));
        let water = water.then(|| sub(&mut rng, 100.0..900.0));
        Household {
            rng,
            solar_kwp,
            cloud: 0.8,
            drift: [0.0; 3],
            running: Vec::new(),
            import_wh,
            export_wh,
            reactive_import_varh: import_wh * 0.07,
            reactive_export_varh: import_wh * 0.6,
            gas,
            water,
            sample: Sample::default(),
        }
    }

    /// Advances the household by `dt_s` seconds ending at `now`, updating the counters.
    pub fn step(&mut self, now: &Zoned, dt_s: f64) {
        let hour = now.hour() as f64 + now.minute() as f64 / 60.0;
        let day_of_year = now.day_of_year() as f64;

        // Base load: night, morning and evening peaks; fridge on phase 1.
        let base = 0.12
            + 0.25 * bump(hour, 7.5, 1.2)
            + 0.45 * bump(hour, 19.5, 2.5)
            + 0.1 * bump(hour, 13.0, 2.0);
        let fridge = if (now.minute() / 10) % 2 == 0 {
            0.09
        } else {
            0.0
        };
        let mut load = [base * 0.45 + fridge, base * 0.3, base * 0.25];
        for l in &mut load {
            *l *= 1.0 + self.rng.random_range(-0.08..0.08);
        }

        // Appliances start at random in their hours and run for a while.
        for &Appliance {
            kw,
            minutes,
            phase,
            per_day,
            hours: (from, to),
        } in &APPLIANCES
        {
            let in_hours = (from as f64..to as f64).contains(&hour);
            let hours = f64::from(to - from);
            if in_hours
                && self
                    .rng
                    .random_bool((per_day * dt_s / (hours * 3600.0)).min(1.0))
            {
                self.running.push(Running {
                    phase,
                    kw: kw * self.rng.random_range(0.9..1.1),
                    remaining_s: minutes * 60.0 * self.rng.random_range(0.7..1.3),
                });
            }
        }
        for r in &mut self.running {
            load[r.phase] += r.kw;
            r.remaining_s -= dt_s;
        }
        self.running.retain(|r| r.remaining_s > 0.0);

        // Solar: a daylight arc for Luxembourg's latitude, seasons and passing clouds.
        self.cloud = (self.cloud + self.rng.random_range(-0.05..0.05)).clamp(0.15, 1.0);
        let day_length = 12.0 + 4.2 * (2.0 * PI * (day_of_year - 80.0) / 365.0).sin();
        let solar_noon = 12.5
            + if now.offset().seconds() >= 7200 {
                1.0
            } else {
                0.0
            };
        let sunrise = solar_noon - day_length / 2.0;
        let sun = if hour > sunrise && hour < sunrise + day_length {
            (PI * (hour - sunrise) / day_length).sin().powf(1.5)
        } else {
            0.0
        };
        let season = 0.55 + 0.45 * (2.0 * PI * (day_of_year - 80.0) / 365.0).sin();
        let solar_total = self.solar_kwp * 0.85 * sun * season * self.cloud;
        let solar = [solar_total / 3.0; 3];

        let mut voltage = [0.0; 3];
        let mut reactive = [0.0; 3];
        for p in 0..3 {
            self.drift[p] = (self.drift[p] + self.rng.random_range(-0.3..0.3)).clamp(-4.0, 4.0);
            let net = load[p] - solar[p];
            voltage[p] = 231.0 + self.drift[p] - 0.6 * net.max(0.0) + 0.8 * (-net).max(0.0);
            reactive[p] = 0.18 * load[p] - 0.03 * solar[p];
        }
        self.sample = Sample {
            load_kw: load,
            solar_kw: solar,
            voltage_v: voltage,
            reactive_kvar: reactive,
        };

        let total = self.sample.total_kw();
        let hours_elapsed = dt_s / 3600.0;
        self.import_wh += total.max(0.0) * 1000.0 * hours_elapsed;
        self.export_wh += (-total).max(0.0) * 1000.0 * hours_elapsed;
        let q = self.sample.total_kvar();
        self.reactive_import_varh += q.max(0.0) * 1000.0 * hours_elapsed;
        self.reactive_export_varh += (-q).max(0.0) * 1000.0 * hours_elapsed;

        // Gas: heating in the cold months, hot water all year. Water: showers and the tap.
        let winter = 0.5 + 0.5 * (2.0 * PI * (day_of_year + 10.0) / 365.0).cos();
        let heating_m3_h =
            winter * (0.25 + 0.35 * bump(hour, 7.0, 2.0) + 0.3 * bump(hour, 19.0, 3.0));
        let hot_water_m3_h = 0.05 * bump(hour, 7.5, 1.0) + 0.04 * bump(hour, 21.0, 1.5);
        let water_m3_h = 0.03 * bump(hour, 7.5, 1.0) + 0.02 * bump(hour, 19.5, 2.0) + 0.002;
        let noise = self.rng.random_range(0.8..1.2);
        if let Some(gas) = &mut self.gas {
            gas.total_m3 += (heating_m3_h + hot_water_m3_h) * noise * hours_elapsed;
            report_every_5_min(gas, now);
        }
        if let Some(water) = &mut self.water {
            water.total_m3 += water_m3_h * noise * hours_elapsed;
            report_every_5_min(water, now);
        }
    }
}

/// M-Bus devices report at most every 5 minutes, stamped with the capture time.
fn report_every_5_min(meter: &mut SubMeter, now: &Zoned) {
    let minute_slot = now.minute() / 5;
    let due = match &meter.reported {
        None => true,
        Some((_, at)) => {
            at.hour() != now.hour() || at.minute() / 5 != minute_slot || at.date() != now.date()
        }
    };
    if due {
        let at = now
            .with()
            .minute(minute_slot * 5)
            .second(0)
            .subsec_nanosecond(0)
            .build()
            .unwrap_or_else(|_| now.clone());
        meter.reported = Some((meter.total_m3, at));
    }
}

/// A smooth bump of width `width` hours around `center`.
fn bump(hour: f64, center: f64, width: f64) -> f64 {
    let d = (hour - center) / width;
    (-d * d).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_grow_with_the_power_drawn() {
        let mut house = Household::new(7, 0.0, true, true);
        let start = house.import_wh;
        let mut now: Zoned = "2026-01-15T18:00:00+01:00[Europe/Luxembourg]"
            .parse()
            .unwrap();
        let mut expected = 0.0;
        for _ in 0..360 {
            now = now.checked_add(jiff::Span::new().seconds(10)).unwrap();
            house.step(&now, 10.0);
            expected += house.sample.total_kw().max(0.0) * 1000.0 * 10.0 / 3600.0;
            assert!(house.sample.total_kw() > 0.0, "no solar: always importing");
        }
        assert!((house.import_wh - start - expected).abs() < 1e-6);
        assert!(expected > 100.0, "an evening hour draws more than 0.1 kWh");
        assert!(house.gas.as_ref().unwrap().reported.is_some());
    }

    #[test]
    fn solar_exports_at_noon_in_summer() {
        let mut house = Household::new(3, 6.0, false, false);
        let now: Zoned = "2026-06-21T13:30:00+02:00[Europe/Luxembourg]"
            .parse()
            .unwrap();
        house.cloud = 1.0;
        house.step(&now, 10.0);
        assert!(house.sample.solar_kw.iter().sum::<f64>() > 3.0);
        let night: Zoned = "2026-06-21T02:00:00+02:00[Europe/Luxembourg]"
            .parse()
            .unwrap();
        house.step(&night, 10.0);
        assert_eq!(house.sample.solar_kw.iter().sum::<f64>(), 0.0);
    }
}
