//! Time ranges of API requests: `from`/`to` parameters, local days and months.

use jiff::{Span, Timestamp, Zoned};

use crate::output::time::{meter_zone, parse_time};

/// Unix seconds now.
pub fn now() -> i64 {
    Timestamp::now().as_second()
}

fn zoned(ts: i64) -> Zoned {
    Timestamp::from_second(ts)
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_zoned(meter_zone())
}

/// Local midnight (Europe/Luxembourg) of the day `days` days after the one holding `ts`.
pub fn day_start(ts: i64, days: i64) -> i64 {
    let day = zoned(ts).start_of_day().unwrap_or_else(|_| zoned(ts));
    day.checked_add(Span::new().days(days))
        .and_then(|z| z.start_of_day())
        .map_or(ts, |z| z.timestamp().as_second())
}

/// The local start of the month `months` months after the one holding `ts`.
pub fn month_start(ts: i64, months: i64) -> i64 {
    let z = zoned(ts);
    z.first_of_month()
        .and_then(|first| first.checked_add(Span::new().months(months)))
        .and_then(|first| first.start_of_day())
        .map_or(ts, |first| first.timestamp().as_second())
}

/// Parses optional `from`/`to`; `to` defaults to now, `from` to `default_from(to)`.
///
/// # Errors
/// A parameter that is not a time, or `from` not before `to`.
pub fn parse_range(
    from: Option<&str>,
    to: Option<&str>,
    default_from: impl FnOnce(i64) -> i64,
) -> Result<(i64, i64), String> {
    let parse = |name: &str, text: &str| {
        parse_time(text)
            .map(|t| t.as_second())
            .map_err(|e| format!("{name}: {e}"))
    };
    let to = match to {
        Some(text) => parse("to", text)?,
        None => now(),
    };
    let from = match from {
        Some(text) => parse("from", text)?,
        None => default_from(to),
    };
    if from >= to {
        return Err(format!("from ({from}) must be before to ({to})"));
    }
    Ok((from, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> i64 {
        parse_time(text).unwrap().as_second()
    }

    #[test]
    fn local_days_and_months() {
        let t = ts("2026-11-22T10:30:00+01:00");
        assert_eq!(day_start(t, 0), ts("2026-11-22"));
        assert_eq!(day_start(t, 1), ts("2026-11-23"));
        assert_eq!(day_start(t, -30), ts("2026-10-23"));
        assert_eq!(month_start(t, 0), ts("2026-11-01"));
        assert_eq!(month_start(t, -1), ts("2026-10-01"));
        assert_eq!(month_start(t, 1), ts("2026-12-01"));
        // The DST change: 2026-10-25 has 25 hours.
        assert_eq!(
            day_start(ts("2026-10-25T12:00"), 1) - ts("2026-10-25"),
            25 * 3600
        );
    }

    #[test]
    fn ranges() {
        let (from, to) = parse_range(Some("2026-11-01"), Some("2026-11-02"), |_| 0).unwrap();
        assert_eq!(to - from, 86400);
        let (from, to) = parse_range(None, Some("2026-11-02"), |to| to - 3600).unwrap();
        assert_eq!(to - from, 3600);
        assert!(parse_range(Some("2026-11-02"), Some("2026-11-01"), |_| 0).is_err());
        assert!(
            parse_range(Some("soon"), None, |_| 0)
                .unwrap_err()
                .starts_with("from:")
        );
    }
}
