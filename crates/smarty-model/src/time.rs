//! Time in the meters' zone: meter timestamps as instants and RFC 3339 text, times given by
//! people (the command line, query strings), local days and months.
//!
//! Times are Unix seconds (`i64`) wherever they are stored or computed with; local days are
//! [`jiff::civil::Date`]s in [`METER_ZONE`].

use std::time::{SystemTime, UNIX_EPOCH};

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Span, Zoned};
use smarty_p1::Timestamp;

/// The zone of meters that send times without a DST flag (DSMR 2.2), and of local days and
/// months in reports. Luxembourg, Belgium and the Netherlands share its rules.
pub const METER_ZONE: &str = "Europe/Luxembourg";

/// The zone of [`METER_ZONE`], or UTC if the bundled database lacks it (it never does).
pub fn meter_zone() -> TimeZone {
    TimeZone::get(METER_ZONE).unwrap_or(TimeZone::UTC)
}

/// The instant of a meter timestamp: its offset from the meter's S/W flag, else from the
/// rules of [`METER_ZONE`]; `None` for a local time the zone skips.
pub fn instant(t: &Timestamp) -> Option<jiff::Timestamp> {
    if let Some(seconds) = t.unix_seconds() {
        return jiff::Timestamp::from_second(seconds).ok();
    }
    civil(t)?
        .to_zoned(meter_zone())
        .ok()
        .map(|zoned| zoned.timestamp())
}

/// Unix seconds of a meter timestamp (see [`instant`]).
pub fn unix_of(t: &Timestamp) -> Option<i64> {
    instant(t).map(|t| t.as_second())
}

fn civil(t: &Timestamp) -> Option<DateTime> {
    DateTime::new(
        i16::try_from(t.year).ok()?,
        t.month as i8,
        t.day as i8,
        t.hour as i8,
        t.minute as i8,
        t.second as i8,
        0,
    )
    .ok()
}

/// A meter timestamp as RFC 3339 with its offset (`2026-04-03T17:54:31+02:00`): from the
/// meter's S/W flag, else from the rules of [`METER_ZONE`].
pub fn rfc3339(t: &Timestamp) -> String {
    if t.dst.is_some() {
        return t.to_string();
    }
    let Some(civil) = civil(t) else {
        return t.to_string();
    };
    match civil.to_zoned(meter_zone()) {
        Ok(zoned) => zoned
            .timestamp()
            .display_with_offset(zoned.offset())
            .to_string(),
        Err(_) => t.to_string(),
    }
}

/// Unix seconds `ts` as local RFC 3339 in `zone` (`2026-11-22T10:00:00+01:00`); the number
/// itself when out of range.
pub fn local_rfc3339(ts: i64, zone: &TimeZone) -> String {
    match jiff::Timestamp::from_second(ts) {
        Ok(t) => {
            let zoned = t.to_zoned(zone.clone());
            zoned
                .timestamp()
                .display_with_offset(zoned.offset())
                .to_string()
        }
        Err(_) => ts.to_string(),
    }
}

/// A `SystemTime` as RFC 3339 in UTC (`2026-04-03T15:54:31Z`); empty when out of range.
pub fn rfc3339_utc(t: SystemTime) -> String {
    jiff::Timestamp::try_from(t).map_or_else(|_| String::new(), |t| t.to_string())
}

/// Unix seconds of a `SystemTime` (0 before 1970).
pub fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A time that [`parse_time`] does not take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimeError {
    /// Text in none of the accepted forms.
    #[error(
        "{text:?} is not a time: use 2026-11-22, 2026-11-22T10:00 (local time, {METER_ZONE}), \
         2026-11-22T10:00:00+01:00 or Unix seconds"
    )]
    NotATime {
        /// The text given.
        text: String,
    },
    /// A time of an accepted form that cannot be represented (out of range, a local time the
    /// zone skips).
    #[error("{text:?}: {reason}")]
    Invalid {
        /// The text given.
        text: String,
        /// Why, in words.
        reason: String,
    },
}

/// A point in time from the command line or a query string: RFC 3339 with an offset
/// (`2026-11-22T10:00:00+01:00`, `…Z`), a local date (`2026-11-22`, midnight in
/// [`METER_ZONE`]), a local date and time (`2026-11-22T10:00`, `2026-11-22 10:00:00`), or
/// Unix seconds (`1795000000`).
///
/// # Errors
/// [`TimeError`]: text in none of these forms, or a time out of range.
pub fn parse_time(text: &str) -> Result<jiff::Timestamp, TimeError> {
    let text = text.trim();
    let invalid = |reason: &dyn std::fmt::Display| TimeError::Invalid {
        text: text.to_owned(),
        reason: reason.to_string(),
    };
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) && text.len() > 8 {
        let seconds: i64 = text.parse().map_err(|e| invalid(&e))?;
        return jiff::Timestamp::from_second(seconds).map_err(|e| invalid(&e));
    }
    if let Ok(t) = text.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    let civil = text.parse::<DateTime>().or_else(|_| {
        text.parse::<Date>()
            .map(|d| d.to_datetime(jiff::civil::Time::midnight()))
    });
    match civil {
        Ok(civil) => civil
            .to_zoned(meter_zone())
            .map(|z| z.timestamp())
            .map_err(|e| invalid(&e)),
        Err(_) => Err(TimeError::NotATime {
            text: text.to_owned(),
        }),
    }
}

fn zoned(ts: i64, zone: &TimeZone) -> Zoned {
    jiff::Timestamp::from_second(ts)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_zoned(zone.clone())
}

/// The local day in `zone` holding Unix second `ts`.
pub fn day_of(ts: i64, zone: &TimeZone) -> Date {
    zoned(ts, zone).date()
}

/// The start (local midnight) of `day` in `zone`, Unix seconds.
pub fn day_start(day: Date, zone: &TimeZone) -> i64 {
    day.to_zoned(zone.clone())
        .map_or(0, |z| z.timestamp().as_second())
}

/// The start of the local day `days` days after the one holding `ts` (`days` may be
/// negative): [`day_start`] of that [`day_of`]; `ts` itself when out of range.
pub fn day_start_after(ts: i64, days: i64, zone: &TimeZone) -> i64 {
    day_of(ts, zone)
        .checked_add(Span::new().days(days))
        .map_or(ts, |day| day_start(day, zone))
}

/// The start (local midnight of the first) of the month `months` months after the one holding
/// `ts` (`months` may be negative); `ts` itself when out of range.
pub fn month_start_after(ts: i64, months: i64, zone: &TimeZone) -> i64 {
    day_of(ts, zone)
        .first_of_month()
        .checked_add(Span::new().months(months))
        .map_or(ts, |first| day_start(first, zone))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_from_flag_or_zone() {
        let s = Timestamp::parse("260403175431S").unwrap().unwrap();
        assert_eq!(rfc3339(&s), "2026-04-03T17:54:31+02:00");
        let naive = Timestamp::parse("161107190000").unwrap().unwrap();
        assert_eq!(rfc3339(&naive), "2016-11-07T19:00:00+01:00");
        let summer = Timestamp::parse("160707190000").unwrap().unwrap();
        assert_eq!(rfc3339(&summer), "2016-07-07T19:00:00+02:00");
        // The instant is the one the text names.
        for t in [s, naive, summer] {
            let text: jiff::Timestamp = rfc3339(&t).parse().unwrap();
            assert_eq!(instant(&t), Some(text));
            assert_eq!(unix_of(&t), Some(text.as_second()));
        }
    }

    #[test]
    fn times_from_the_command_line() {
        let utc = |s: &str| parse_time(s).unwrap().to_string();
        assert_eq!(utc("2026-11-22"), "2026-11-21T23:00:00Z");
        assert_eq!(utc("2026-07-01T10:00"), "2026-07-01T08:00:00Z");
        assert_eq!(utc("2026-07-01 10:00:30"), "2026-07-01T08:00:30Z");
        assert_eq!(utc("2026-07-01T10:00:00+02:00"), "2026-07-01T08:00:00Z");
        assert_eq!(utc("2026-07-01T08:00:00Z"), "2026-07-01T08:00:00Z");
        assert_eq!(utc("1782892800"), "2026-07-01T08:00:00Z");
        let error = parse_time("yesterday").unwrap_err();
        assert!(matches!(error, TimeError::NotATime { .. }));
        assert!(error.to_string().contains("not a time"), "{error}");
        assert!(matches!(
            parse_time("99999999999999999"),
            Err(TimeError::Invalid { .. })
        ));
    }

    fn ts(text: &str) -> i64 {
        parse_time(text).unwrap().as_second()
    }

    #[test]
    fn local_days_and_months() {
        let zone = meter_zone();
        let t = ts("2026-11-22T10:30:00+01:00");
        assert_eq!(day_of(t, &zone), "2026-11-22".parse::<Date>().unwrap());
        assert_eq!(day_start(day_of(t, &zone), &zone), ts("2026-11-22"));
        assert_eq!(day_start_after(t, 0, &zone), ts("2026-11-22"));
        assert_eq!(day_start_after(t, 1, &zone), ts("2026-11-23"));
        assert_eq!(day_start_after(t, -30, &zone), ts("2026-10-23"));
        assert_eq!(month_start_after(t, 0, &zone), ts("2026-11-01"));
        assert_eq!(month_start_after(t, -1, &zone), ts("2026-10-01"));
        assert_eq!(month_start_after(t, 1, &zone), ts("2026-12-01"));
        // The DST change: 2026-10-25 has 25 hours.
        assert_eq!(
            day_start_after(ts("2026-10-25T12:00"), 1, &zone) - ts("2026-10-25"),
            25 * 3600
        );
        assert_eq!(
            local_rfc3339(ts("2026-07-01T08:00:00Z"), &zone),
            "2026-07-01T10:00:00+02:00"
        );
    }
}
