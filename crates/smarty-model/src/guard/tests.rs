//! Simulated households against the guard: loads that cross the line early, late and not at
//! all, a gap over a quarter boundary, DST days, a register reset; and the closed quarters
//! against the store's way of attributing energy to 15-minute periods.

use super::*;
use crate::time::meter_zone;

/// 2026-01-05 00:00 Europe/Luxembourg (a quarter's start).
const MONDAY: i64 = 1_767_567_600;

/// A household sending every 10 s: `power_w(t)` at second `t` after `from`, for `seconds`;
/// returns the readings (register integrated exactly, in Wh, from `register_wh`).
fn household(
    from: i64,
    seconds: i64,
    register_wh: i64,
    power_w: impl Fn(i64) -> f64,
) -> Vec<Reading> {
    let mut register = register_wh as f64;
    let mut out = Vec::new();
    let mut t = 0;
    while t <= seconds {
        let p = power_w(t);
        out.push(Reading::new(
            from + t,
            register.floor() as i64,
            Some(p / 1000.0),
        ));
        register += p * 10.0 / 3600.0;
        t += 10;
    }
    out
}

fn guard(reference_kw: f64) -> Guard {
    Guard::new(
        GuardConfig::new(reference_kw).with_headroom_alert_kw(Some(1.0)),
        meter_zone(),
    )
}

/// Feeds `readings`; returns every update.
fn run(guard: &mut Guard, readings: &[Reading]) -> Vec<Update> {
    readings.iter().map(|r| guard.update(r)).collect()
}

fn first_alert(updates: &[Update], what: fn(&Alert) -> bool) -> Option<i64> {
    updates
        .iter()
        .find(|u| u.alerts.iter().any(what))
        .map(|u| u.state.at)
}

fn will_exceed(a: &Alert) -> bool {
    matches!(a, Alert::WillExceed { .. })
}

#[test]
fn an_early_crossing_is_warned_of_at_once_and_the_quarter_is_exceeded() {
    // 7 kW reference; a 9 kW load (car + oven) from minute 2 of the quarter.
    let mut g = guard(7.0);
    let readings = household(MONDAY - 60, 16 * 60, 5_000_000, |t| {
        if t >= 180 { 9_000.0 } else { 500.0 }
    });
    let updates = run(&mut g, &readings);
    let warned = first_alert(&updates, will_exceed).expect("a warning");
    // The first telegram at 9 kW projects over 7 kW: warned 2 minutes in, 13 minutes early.
    assert_eq!(warned, MONDAY + 120);
    let last_in_quarter = updates
        .iter()
        .rfind(|u| u.state.quarter_start == MONDAY)
        .unwrap();
    assert_eq!(last_in_quarter.state.verdict, Verdict::Exceeded);
    assert_eq!(last_in_quarter.state.headroom_kw, 0.0);
    // Each kind of alert at most once in the quarter.
    let in_quarter: Vec<&Alert> = updates
        .iter()
        .filter(|u| u.state.quarter_start == MONDAY)
        .flat_map(|u| &u.alerts)
        .collect();
    assert_eq!(
        in_quarter.iter().filter(|a| will_exceed(a)).count(),
        1,
        "{in_quarter:?}"
    );
}

#[test]
fn a_late_crossing_is_warned_of_before_the_end() {
    // 3 kW reference, 1 kW for 11 minutes, then 10 kW: 183 Wh + 10 kW × 4 min = 850 Wh > 750.
    let mut g = guard(3.0);
    let readings = household(MONDAY, 15 * 60 - 10, 1_000_000, |t| {
        if t >= 660 { 10_000.0 } else { 1_000.0 }
    });
    let updates = run(&mut g, &readings);
    let warned = first_alert(&updates, will_exceed).expect("a warning");
    assert!(warned < MONDAY + 900 - 60, "warned at {}", warned - MONDAY);
    assert_eq!(warned, MONDAY + 660);
    // Until then the verdict was fine, and the headroom was more than the load.
    for u in updates.iter().filter(|u| u.state.at < warned) {
        assert_eq!(u.state.verdict, Verdict::Fine, "at {}", u.state.at - MONDAY);
        assert!(u.state.headroom_kw >= 3.0 - 1e-9, "{}", u.state.headroom_kw);
    }
}

#[test]
fn a_household_below_the_line_is_never_warned() {
    // 7 kW reference, a load between 1 and 6.5 kW for three hours.
    let mut g = guard(7.0);
    let readings = household(MONDAY, 3 * 3600, 2_000_000, |t| {
        1_000.0 + 5_500.0 * (((t / 60) % 7) as f64 / 6.0)
    });
    let updates = run(&mut g, &readings);
    for u in &updates {
        assert_eq!(u.state.verdict, Verdict::Fine, "at {}", u.state.at - MONDAY);
        assert!(
            u.alerts
                .iter()
                .all(|a| matches!(a, Alert::NewMonthlyPeak { .. })),
            "{:?}",
            u.alerts
        );
    }
}

#[test]
fn a_power_hovering_at_the_line_does_not_flap() {
    // 3 kW reference; the projection alternates 2.95 / 3.05 kW (power 2.9 / 3.1 kW).
    let mut g = Guard::new(GuardConfig::new(3.0).with_hysteresis_kw(0.2), TimeZone::UTC);
    let readings = household(MONDAY, 890, 0, |t| {
        if (t / 10) % 2 == 0 { 2_900.0 } else { 3_100.0 }
    });
    let updates = run(&mut g, &readings);
    let verdicts: Vec<Verdict> = updates.iter().map(|u| u.state.verdict).collect();
    let switches = verdicts.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(switches <= 2, "{switches} switches: {verdicts:?}");
    let alerts = updates
        .iter()
        .flat_map(|u| &u.alerts)
        .filter(|a| will_exceed(a))
        .count();
    assert!(alerts <= 1);
}

#[test]
fn a_gap_over_a_quarter_boundary_counts_as_the_store_counts() {
    let mut g = guard(7.0);
    // Readings until 00:13, then none until 00:17: the increase from 00:13 to 00:17 belongs to
    // the quarter of 00:17 (its first reading), as in the store.
    let mut readings = household(MONDAY, 13 * 60, 100_000, |_| 2_400.0); // 40 Wh a minute
    let before = readings.last().unwrap().energy_import_wh;
    readings.push(Reading::new(MONDAY + 17 * 60, before + 160, Some(2.4)));
    let updates = run(&mut g, &readings);
    let last = updates.last().unwrap();
    let closed = last.closed.expect("the first quarter closed");
    assert_eq!(closed.start, MONDAY);
    assert_eq!(closed.energy_import_wh, before - 100_000);
    assert_eq!(last.state.quarter_start, MONDAY + 900);
    assert_eq!(last.state.energy_import_wh, 160);
}

#[test]
fn a_register_reset_is_attributed_as_the_store_does() {
    let mut g = guard(7.0);
    run(&mut g, &household(MONDAY, 60, 50_000, |_| 3_600.0));
    // A drop inside the quarter: as the store, the quarter then counts nothing more than its
    // register's rise above the last value before it (none here), never negative energy.
    let update = g.update(&Reading::new(MONDAY + 70, 12, Some(3.6)));
    assert_eq!(update.state.energy_import_wh, 0);
    let update = g.update(&Reading::new(MONDAY + 80, 22, Some(3.6)));
    assert_eq!(update.state.energy_import_wh, 0);
    // The next quarter counts on from the new value.
    let update = g.update(&Reading::new(MONDAY + 900, 40, Some(3.6)));
    assert_eq!(update.closed.map(|c| c.energy_import_wh), Some(0));
    assert_eq!(update.state.energy_import_wh, 18);
    // A drop at a quarter's first reading: the quarter counts from that value.
    let update = g.update(&Reading::new(MONDAY + 1800, 5, Some(3.6)));
    assert_eq!(update.state.energy_import_wh, 0);
    let update = g.update(&Reading::new(MONDAY + 1810, 15, Some(3.6)));
    assert_eq!(update.state.energy_import_wh, 10);
}

#[test]
fn quarters_stay_aligned_over_the_dst_changes_and_peaks_follow_the_local_month() {
    let zone = meter_zone();
    // 2026-03-29 01:00 UTC: clocks go from 02:00 to 03:00 local; 2026-10-25 01:00 UTC back.
    for change in [1_774_746_000_i64, 1_792_890_000] {
        let mut g = Guard::new(GuardConfig::new(7.0), zone.clone());
        let updates = run(&mut g, &household(change - 1800, 3600, 0, |_| 1_000.0));
        let starts: Vec<i64> = updates
            .iter()
            .filter_map(|u| u.closed)
            .map(|c| c.start)
            .collect();
        assert_eq!(starts, [change - 1800, change - 900, change, change + 900]);
        for u in &updates {
            let local = jiff::Timestamp::from_second(u.state.quarter_start)
                .unwrap()
                .to_zoned(zone.clone());
            assert_eq!(local.minute() % 15, 0);
            assert_eq!(local.second(), 0);
        }
    }
    // The month's peak starts afresh at local midnight of the first (23:00 UTC in winter).
    let mut g = Guard::new(GuardConfig::new(7.0), zone.clone());
    let february = 1_769_900_400; // 2026-02-01 00:00 local
    run(&mut g, &household(february - 1800, 1790, 0, |_| 6_000.0));
    let update = g.update(&Reading::new(february + 300, 3_000, Some(0.1)));
    assert_eq!(update.state.month_peak_start, Some(february));
    assert!(update.state.month_peak_kw.unwrap() < 6.0);
}

#[test]
fn a_new_monthly_peak_is_announced_once() {
    let mut g = guard(20.0);
    // 2 kW for a quarter, 1 kW until 01:00, then 4 kW.
    let readings = household(MONDAY, 7200, 0, |t| match t {
        0..900 => 2_000.0,
        900..3600 => 1_000.0,
        _ => 4_000.0,
    });
    let updates = run(&mut g, &readings);
    let peaks: Vec<&Update> = updates
        .iter()
        .filter(|u| {
            u.alerts
                .iter()
                .any(|a| matches!(a, Alert::NewMonthlyPeak { .. }))
        })
        .collect();
    // The quarter from 01:00 passes the 2 kW quarters once its energy does.
    assert!(
        peaks.iter().any(|u| u.state.quarter_start == MONDAY + 3600),
        "{peaks:?}"
    );
    assert!(peaks.iter().all(|u| u.state.quarter_start >= MONDAY + 3600));
    assert_eq!(
        peaks
            .iter()
            .filter(|u| u.state.quarter_start == MONDAY + 3600)
            .count(),
        1
    );
    assert!((updates.last().unwrap().state.month_peak_kw.unwrap() - 4.0).abs() < 0.01);
}

/// The store's attribution (docs/storage.md), written out: a period's energy is its last
/// register minus the last one before it; when its first value is below that (a register
/// that went backwards), its last minus its first; never negative.
fn store_intervals(readings: &[Reading]) -> Vec<(i64, i64)> {
    // Each period's first and last register.
    let mut periods: Vec<(i64, i64, i64)> = Vec::new();
    for r in readings {
        let start = interval_start(r.ts);
        match periods.last_mut() {
            Some((s, _, last)) if *s == start => *last = r.energy_import_wh,
            _ => periods.push((start, r.energy_import_wh, r.energy_import_wh)),
        }
    }
    let mut baseline: Option<i64> = None;
    periods
        .into_iter()
        .map(|(start, first, last)| {
            let reference = match baseline {
                Some(b) if first >= b => b,
                _ => first,
            };
            baseline = Some(last);
            (start, (last - reference).max(0))
        })
        .collect()
}

#[test]
fn closed_quarters_equal_the_stores_intervals() {
    let mut g = guard(5.0);
    let mut readings = household(MONDAY + 7, 5 * 3600, 123_456, |t| {
        1_000.0 + ((t * 7919) % 6000) as f64
    });
    // A gap, a reset at a quarter's first reading, and one inside a quarter.
    readings.retain(|r| !(MONDAY + 3000..MONDAY + 4000).contains(&r.ts));
    for r in readings.iter_mut().filter(|r| r.ts > MONDAY + 4 * 3600) {
        r.energy_import_wh -= 100_000;
    }
    for r in readings
        .iter_mut()
        .filter(|r| r.ts > MONDAY + 4 * 3600 + 1200)
    {
        r.energy_import_wh -= 100_000;
    }
    let updates = run(&mut g, &readings);
    let closed: Vec<(i64, i64)> = updates
        .iter()
        .filter_map(|u| u.closed)
        .map(|c| (c.start, c.energy_import_wh))
        .collect();
    let store = store_intervals(&readings);
    assert_eq!(closed, store[..store.len() - 1]);
    let current = updates.last().unwrap().state;
    assert_eq!(
        (current.quarter_start, current.energy_import_wh),
        *store.last().unwrap()
    );
}

#[test]
fn the_meters_demand_registers_are_passed_on() {
    let mut g = guard(5.0);
    let update = g.update(&Reading::new(MONDAY, 1, Some(0.2)).with_demand(Some(1.234), Some(4.5)));
    assert_eq!(update.state.meter_demand_kw, Some(1.234));
    assert_eq!(update.state.meter_month_max_demand_kw, Some(4.5));
}
