//! The daily partitions of `reading` (`reading_YYYYMMDD`, UTC days), made by `smarty` itself
//! (no `pg_partman`): a few days ahead when a writer starts and whenever it writes readings
//! of a day without one (an import of old history), and dropped whole once their day is past
//! the retention period.

use std::collections::BTreeSet;

use super::PgClient;
use jiff::Timestamp;

use crate::StoreError;

/// Days created ahead of today.
const AHEAD_DAYS: i64 = 3;

/// The advisory lock key taken while partitions are created or dropped ("smarty-p" in
/// ASCII), so that writers of several processes do not race.
const PARTITION_LOCK: i64 = 0x736d_6172_7479_2d70;

/// The partitions a writer knows to exist, as UTC day numbers (Unix seconds / 86,400).
#[derive(Debug, Default)]
pub(crate) struct Partitions {
    known: BTreeSet<i64>,
}

/// The name of the partition of day number `day`.
fn name(day: i64) -> String {
    let date = Timestamp::from_second(day * 86_400)
        .map(|t| t.to_zoned(jiff::tz::TimeZone::UTC).date())
        .unwrap_or_default();
    format!(
        "reading_{:04}{:02}{:02}",
        date.year(),
        date.month(),
        date.day()
    )
}

impl Partitions {
    /// Creates the partitions of today and the next days.
    pub(crate) fn ensure_ahead(&mut self, client: &mut PgClient) -> Result<(), StoreError> {
        let today = Timestamp::now().as_second().div_euclid(86_400);
        self.ensure(client, (today..=today + AHEAD_DAYS).map(|d| d * 86_400))
    }

    /// Creates the partitions of the days of `times` (Unix seconds) that have none yet.
    pub(crate) fn ensure(
        &mut self,
        client: &mut PgClient,
        times: impl IntoIterator<Item = i64>,
    ) -> Result<(), StoreError> {
        let missing: BTreeSet<i64> = times
            .into_iter()
            .map(|t| t.div_euclid(86_400))
            .filter(|day| !self.known.contains(day))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        client.run(|client| {
            let mut tx = client.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PARTITION_LOCK])?;
            for &day in &missing {
                let (from, to) = (
                    Timestamp::from_second(day * 86_400).unwrap_or_default(),
                    Timestamp::from_second((day + 1) * 86_400).unwrap_or_default(),
                );
                tx.batch_execute(&format!(
                    "CREATE TABLE IF NOT EXISTS {} PARTITION OF reading
                 FOR VALUES FROM ('{from}') TO ('{to}')",
                    name(day)
                ))?;
            }
            tx.commit()?;
            Ok(())
        })?;
        self.known.extend(missing);
        Ok(())
    }

    /// Drops the partitions whose whole day is before `cutoff` and deletes the readings
    /// before it in the partition holding it. Returns the readings removed.
    pub(crate) fn drop_before(
        &mut self,
        client: &mut PgClient,
        cutoff: i64,
    ) -> Result<u64, StoreError> {
        let known = &mut self.known;
        client.run(|client| {
            let mut tx = client.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PARTITION_LOCK])?;
            let partitions: Vec<String> = tx
                .query(
                    "SELECT c.relname FROM pg_inherits AS i
                 JOIN pg_class AS c ON c.oid = i.inhrelid
                 WHERE i.inhparent = 'reading'::regclass ORDER BY c.relname",
                    &[],
                )?
                .into_iter()
                .map(|row| row.get(0))
                .collect();
            let cutoff_day = cutoff.div_euclid(86_400);
            let mut removed = 0u64;
            for partition in partitions {
                let Some(day) = day_of_name(&partition) else {
                    continue;
                };
                if day < cutoff_day {
                    let n: i64 = tx
                        .query_one(&format!("SELECT count(*) FROM {partition}"), &[])?
                        .get(0);
                    tx.batch_execute(&format!("DROP TABLE {partition}"))?;
                    removed += u64::try_from(n).unwrap_or(0);
                    known.remove(&day);
                }
            }
            let cutoff_ts = Timestamp::from_second(cutoff).unwrap_or_default();
            removed += tx.execute("DELETE FROM reading WHERE time < $1", &[&cutoff_ts])?;
            tx.commit()?;
            Ok(removed)
        })
    }
}

/// The day number of a partition's name.
fn day_of_name(name: &str) -> Option<i64> {
    let digits = name.strip_prefix("reading_")?;
    if digits.len() != 8 {
        return None;
    }
    let date = jiff::civil::Date::new(
        digits[..4].parse().ok()?,
        digits[4..6].parse().ok()?,
        digits[6..].parse().ok()?,
    )
    .ok()?;
    let ts = date.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp();
    Some(ts.as_second().div_euclid(86_400))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_utc_days_and_read_back() {
        let day = 1_764_806_400 / 86_400; // 2025-12-04
        assert_eq!(name(day), "reading_20251204");
        assert_eq!(day_of_name("reading_20251204"), Some(day));
        assert_eq!(day_of_name("reading_default"), None);
    }
}
