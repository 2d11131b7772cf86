//! Time ranges of API requests: `from`/`to` parameters, local days and months.

use jiff::Timestamp;

use smarty_model::time::parse_time;

/// Unix seconds now.
pub fn now() -> i64 {
    Timestamp::now().as_second()
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
