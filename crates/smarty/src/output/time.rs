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
}
