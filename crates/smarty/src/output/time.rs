//! Meter timestamps as RFC 3339 with an offset.

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use smarty_p1::Timestamp;

/// The zone of meters that send times without a DST flag (DSMR 2.2). Luxembourg, Belgium and
/// the Netherlands share its rules.
pub const METER_ZONE: &str = "Europe/Luxembourg";

/// RFC 3339 with offset: from the meter's S/W flag, else from the Luxembourg zone rules.
pub fn rfc3339(t: &Timestamp) -> String {
    if t.dst.is_some() {
        return t.to_string();
    }
    let Ok(civil) = DateTime::new(
        t.year as i16,
        t.month as i8,
        t.day as i8,
        t.hour as i8,
        t.minute as i8,
        t.second as i8,
        0,
    ) else {
        return t.to_string();
    };
    match TimeZone::get(METER_ZONE).and_then(|tz| civil.to_zoned(tz)) {
        Ok(zoned) => zoned
            .timestamp()
            .display_with_offset(zoned.offset())
            .to_string(),
        Err(_) => t.to_string(),
    }
}

/// The zone of [`METER_ZONE`], or UTC if the bundled database lacks it (it never does).
pub fn meter_zone() -> TimeZone {
    TimeZone::get(METER_ZONE).unwrap_or(TimeZone::UTC)
}

/// A point in time from the command line or a query string: RFC 3339 with an offset
/// (`2026-11-22T10:00:00+01:00`, `…Z`), a local date (`2026-11-22`, midnight in
/// [`METER_ZONE`]), a local date and time (`2026-11-22T10:00`, `2026-11-22 10:00:00`), or
/// Unix seconds (`1795000000`).
///
/// # Errors
/// Text in none of these forms, in words.
pub fn parse_time(text: &str) -> Result<jiff::Timestamp, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) && text.len() > 8 {
        let seconds: i64 = text.parse().map_err(|e| format!("{text:?}: {e}"))?;
        return jiff::Timestamp::from_second(seconds).map_err(|e| format!("{text:?}: {e}"));
    }
    if let Ok(t) = text.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    let civil = text.parse::<DateTime>().or_else(|_| {
        text.parse::<jiff::civil::Date>()
            .map(|d| d.to_datetime(jiff::civil::Time::midnight()))
    });
    match civil {
        Ok(civil) => civil
            .to_zoned(meter_zone())
            .map(|z| z.timestamp())
            .map_err(|e| format!("{text:?}: {e}")),
        Err(_) => Err(format!(
            "{text:?} is not a time: use 2026-11-22, 2026-11-22T10:00 (local time, {METER_ZONE}), \
             2026-11-22T10:00:00+01:00 or Unix seconds"
        )),
    }
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
        assert!(parse_time("yesterday").unwrap_err().contains("not a time"));
    }
}
