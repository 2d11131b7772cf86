//! The guard fed by simulated Smarty telegrams, against a real store written with the same
//! telegrams: the quarter hours it closes are the store's 15-minute intervals, across a
//! telegram gap, a register reset, the autumn DST change and a restart.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use jiff::{ToSpan as _, Zoned};
use smarty_model::event::{GuardEvent, TelegramEvent};
use smarty_model::guard::{Alert, GuardConfig, Verdict};
use smarty_p1::{Decoder, DecoderConfig};
use smarty_store::Store;
use smarty_store::config::StoreConfig;

use super::{GuardSection, MeterGuard};
use crate::cli::Firmware;
use crate::simulate::household::Household;
use crate::simulate::telegram::{Identity, write};

fn identity() -> Identity {
    Identity {
        header: "Lux5\\253663629_D".into(),
        meter_id: "SAG1030700123456".into(),
        gas_id: "FLO182370120350".into(),
        water_id: "ELS353589980300".into(),
    }
}

/// The event of the telegram the household's meter sends at `now`.
fn event(meter: &Arc<str>, house: &Household, now: &Zoned) -> TelegramEvent {
    let bytes = write(house, &identity(), Firmware::Full, now);
    let mut decoder = Decoder::new(DecoderConfig::default());
    decoder.push(&bytes);
    let decoded = decoder.finish().unwrap().expect("a whole telegram");
    TelegramEvent::new(meter, &decoded, SystemTime::now())
}

fn guard(reference_kw: f64, settings: GuardSection) -> MeterGuard {
    MeterGuard::new(settings.guard_config(reference_kw), Arc::new(settings))
}

#[test]
fn closed_quarters_are_the_store_intervals_across_a_gap_a_reset_dst_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreConfig::at(dir.path().join("smarty.db"))).unwrap();
    let mut writer = store.writer().unwrap();
    let meter: Arc<str> = Arc::from("home");
    // 2026-10-25: clocks go back from 03:00 CEST to 02:00 CET.
    let start: Zoned = "2026-10-24T23:00:00+02:00[Europe/Luxembourg]"
        .parse()
        .unwrap();
    let end = start.checked_add(7.hours()).unwrap();
    let gap = (
        "2026-10-25T00:13:00+02:00[Europe/Luxembourg]"
            .parse::<Zoned>()
            .unwrap(),
        "2026-10-25T00:47:20+02:00[Europe/Luxembourg]"
            .parse::<Zoned>()
            .unwrap(),
    );
    let reset: Zoned = "2026-10-25T01:20:00+02:00[Europe/Luxembourg]"
        .parse()
        .unwrap();
    let restart: Zoned = "2026-10-25T02:37:30+01:00[Europe/Luxembourg]"
        .parse()
        .unwrap();
    let mut house = Household::new(11, 0.0, false, false);
    let mut guard = guard(3.0, GuardSection::default());
    let mut closed = Vec::new();
    let mut last: Option<GuardEvent> = None;
    let mut now = start.clone();
    let (mut reset_done, mut restarted) = (false, false);
    while now < end {
        now = now.checked_add(10.seconds()).unwrap();
        house.step(&now, 10.0);
        if now >= reset && !reset_done {
            reset_done = true;
            house.import_wh = 1_000.0; // a replaced meter starts low
        }
        if now >= gap.0 && now < gap.1 {
            continue;
        }
        if now >= restart && !restarted {
            // The service stops and starts again: the store has all it was given.
            restarted = true;
            writer.flush().unwrap();
            guard = self::guard(3.0, GuardSection::default());
            guard.resume(&store, "home").unwrap();
        }
        let event = event(&meter, &house, &now);
        let update = guard.telegram(&event).expect("the telegram has 1-0:1.8.0");
        closed.extend(update.closed);
        last = Some(update);
        let (reading, _) = smarty_store::Reading::from_event(&event);
        writer.push(reading.unwrap());
    }
    writer.flush().unwrap();
    let from = start.timestamp().as_second();
    let stored: BTreeMap<i64, i64> = store
        .reader()
        .unwrap()
        .intervals("home", from, end.timestamp().as_second())
        .unwrap()
        .into_iter()
        .map(|i| (i.start, i.energy_import_wh))
        .collect();
    // 7 hours (23:00 CEST to 05:00 CET, the wall clock's 02:00 twice) hold 28 quarters;
    // the gap leaves two without a telegram; the last telegram, at 05:00, opens the next.
    assert_eq!(closed.len(), 28 - 2, "{closed:?}");
    for quarter in &closed {
        assert_eq!(
            stored.get(&quarter.start),
            Some(&quarter.energy_import_wh),
            "the quarter of {}",
            quarter.start
        );
    }
    // The quarter after the gap brings the whole increase over the gap, as the store's.
    let after_gap = gap.1.timestamp().as_second() / 900 * 900;
    let i = closed.iter().position(|q| q.start == after_gap).unwrap();
    let (q, next) = (closed[i], closed[i + 1]);
    assert!(
        q.energy_import_wh > 2 * next.energy_import_wh,
        "{q:?} {next:?}"
    );
    // The quarter of the reset (inside it) counts nothing, as the store's.
    let reset_quarter = reset.timestamp().as_second() / 900 * 900;
    let q = closed.iter().find(|q| q.start == reset_quarter).unwrap();
    assert_eq!(q.energy_import_wh, 0, "{q:?}");
    // The month's peak after the restart is the highest stored quarter (it was resumed).
    let state = last.unwrap().state;
    let stored_peak = stored.values().max().copied().unwrap() as f64 / 250.0;
    let peak = state.month_peak_kw.unwrap();
    assert!(peak >= stored_peak - 1e-9, "{peak} vs {stored_peak}");
    // Both 02:00 hours of the DST day have their quarters: local 02:00–03:00 twice.
    let first_two = "2026-10-25T02:00:00+02:00"
        .parse::<jiff::Timestamp>()
        .unwrap();
    let second_two = "2026-10-25T02:00:00+01:00"
        .parse::<jiff::Timestamp>()
        .unwrap();
    for t in [first_two, second_two] {
        assert!(closed.iter().any(|q| q.start == t.as_second()));
    }
}

#[test]
fn the_guard_delivers_the_alerts_the_section_asks_for() {
    let meter: Arc<str> = Arc::from("home");
    let start: Zoned = "2026-01-15T18:00:00+01:00[Europe/Luxembourg]"
        .parse()
        .unwrap();
    let mut house = Household::new(3, 0.0, false, false);
    let run = |settings: GuardSection, house: &mut Household| {
        let mut guard = guard(0.1, settings);
        let mut kinds = Vec::new();
        let mut verdicts = Vec::new();
        let mut now = start.clone();
        for _ in 0..170 {
            now = now.checked_add(10.seconds()).unwrap();
            house.step(&now, 10.0);
            let update = guard.telegram(&event(&meter, house, &now)).unwrap();
            kinds.extend(update.alerts.iter().map(Alert::kind));
            verdicts.push(update.state.verdict);
        }
        (kinds, verdicts)
    };
    // At 0.1 kW any household exceeds: "will exceed" once per quarter (two quarters, 28 min), by
    // default; the headroom alert only when a threshold is set.
    let (kinds, verdicts) = run(GuardSection::default(), &mut house);
    assert_eq!(kinds, ["will_exceed", "will_exceed"]);
    assert_eq!(verdicts.last(), Some(&Verdict::Exceeded));
    let settings = GuardSection {
        headroom_below_kw: Some(1.0),
        alert_will_exceed: false,
        ..GuardSection::default()
    };
    let (kinds, _) = run(settings, &mut house);
    assert_eq!(kinds, ["headroom_low", "headroom_low"]);
}

#[test]
fn the_section_is_checked_and_takes_the_tariffs_reference_power() {
    let section = GuardSection::default();
    assert!(section.problems().is_empty());
    assert_eq!(section.guard_config(7.0), GuardConfig::new(7.0));
    let section = GuardSection {
        reference_power_kw: Some(12.0),
        ..GuardSection::default()
    };
    assert_eq!(section.guard_config(7.0).reference_power_kw, 12.0);
    let bad = GuardSection {
        reference_power_kw: Some(0.0),
        hysteresis_kw: -1.0,
        headroom_below_kw: Some(f64::NAN),
        notify_url: Some("ftp://example.org/x".into()),
        command: Some(vec![]),
        ..GuardSection::default()
    };
    let fields: Vec<&str> = bad.problems().into_iter().map(|(f, _)| f).collect();
    assert_eq!(
        fields,
        [
            "reference_power_kw",
            "hysteresis_kw",
            "headroom_below_kw",
            "notify_url",
            "command"
        ]
    );
}
