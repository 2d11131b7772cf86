//! What `smarty fleet serve` shows over a fleet's PostgreSQL store (docs/fleet.md, "fleet
//! serve"): the meter list, paged and searched in SQL so that it stays quick with 10⁵ meters
//! and more, and the community view, summed in SQL over the 15-minute rollups (`agg_15m`).
//!
//! Both read only: the meters are those of `meter` (stored readings) and `fleet_key` (keys
//! imported, perhaps nothing stored yet); keys are never read here. The rejections are those
//! the workers count in `fleet_rejection`.
//!
//! Each query touches a meter's rows through the primary key `(meter, start)` of `agg_15m`
//! (a lateral subquery per meter), never by scanning the table: the list computes last seen
//! and today's energies for the page's meters only (for every matching meter when it is
//! filtered by state), the community view reads the range's rows of its members.

use jiff::Timestamp;
use serde::Serialize;

use crate::StoreError;
use crate::query::ReadConnection;

/// The most meters one page of the list holds.
pub const MAX_PAGE: u32 = 1000;

/// The most top meters the community view gives per direction.
pub const MAX_TOP: u32 = 100;

/// The state of a fleet meter in the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MeterState {
    /// A reading stored within the stale time.
    Ok,
    /// Nothing stored within the stale time (or never).
    Stale,
    /// Its frames are set aside: a rejection within the stale time, later than its last
    /// stored reading (a wrong key, damaged frames…).
    Rejecting,
}

impl MeterState {
    /// `ok`, `stale`, `rejecting`.
    pub fn as_str(self) -> &'static str {
        match self {
            MeterState::Ok => "ok",
            MeterState::Stale => "stale",
            MeterState::Rejecting => "rejecting",
        }
    }

    /// The state named `ok`, `stale` or `rejecting`.
    pub fn from_name(name: &str) -> Option<MeterState> {
        [MeterState::Ok, MeterState::Stale, MeterState::Rejecting]
            .into_iter()
            .find(|s| s.as_str() == name)
    }
}

/// What page of the meter list to read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MeterListQuery {
    /// Only meters whose name or system title holds this text (any case).
    pub search: Option<String>,
    /// Only meters in this state.
    pub state: Option<MeterState>,
    /// Meters on the page, at most (1 to [`MAX_PAGE`]).
    pub limit: u32,
    /// Meters skipped before the page (by name).
    pub offset: u64,
    /// Now, Unix seconds.
    pub now: i64,
    /// Start of today (local midnight), Unix seconds: "today's" energies count from here.
    pub today_start: i64,
    /// A meter with nothing stored for this long is stale (seconds).
    pub stale_after_s: i64,
}

impl MeterListQuery {
    /// The first `limit` meters at `now`, today starting at `today_start`, stale after
    /// `stale_after_s`.
    pub fn new(now: i64, today_start: i64, stale_after_s: i64, limit: u32) -> MeterListQuery {
        MeterListQuery {
            search: None,
            state: None,
            limit,
            offset: 0,
            now,
            today_start,
            stale_after_s,
        }
    }
}

/// One kind of rejection of a meter's frames.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RejectionCount {
    /// Why (`unknown_meter`, `tag`, `crc`, …, as the workers name it).
    pub reason: String,
    /// Frames set aside for it.
    pub count: i64,
    /// The last one, Unix seconds.
    pub last_at: Option<i64>,
}

/// A meter of the list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct FleetMeter {
    /// Its name (readings are stored under it).
    pub name: String,
    /// Its system title in upper-case hex, when its key was imported.
    pub system_title: Option<String>,
    /// The id it sends (0-0:96.1.1), when stored.
    pub meter_id: Option<String>,
    /// Time of its last stored reading, Unix seconds.
    pub last_seen: Option<i64>,
    /// Energy imported today (since [`MeterListQuery::today_start`]), Wh.
    pub today_import_wh: Option<i64>,
    /// Energy exported today, Wh.
    pub today_export_wh: Option<i64>,
    /// Its frames set aside, by reason.
    pub rejections: Vec<RejectionCount>,
    /// ok, stale or rejecting.
    pub state: MeterState,
}

/// A page of the meter list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct MeterPage {
    /// Meters that match the search (and state), over all pages.
    pub total: u64,
    /// The page's meters, by name.
    pub meters: Vec<FleetMeter>,
}

/// How many meters are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct StateCounts {
    /// Every meter.
    pub meters: u64,
    /// In state ok.
    pub ok: u64,
    /// Stale.
    pub stale: u64,
    /// Rejecting.
    pub rejecting: u64,
}

/// Frames set aside from a sender that is no meter of the fleet: a system title without a
/// key, or a subject that names no meter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct UnknownSender {
    /// The system title in upper-case hex (or the subject), as the workers counted it.
    pub sender: String,
    /// Why (`unknown_meter`, `bad_subject`, …).
    pub reason: String,
    /// Frames set aside.
    pub count: i64,
    /// The last one, Unix seconds.
    pub last_at: Option<i64>,
}

/// Which meters and which time the community view sums.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CommunityQuery {
    /// Start, Unix seconds (a quarter-hour start; earlier quarters are not included).
    pub from: i64,
    /// End, exclusive.
    pub to: i64,
    /// Only these meters (by name); every stored meter when `None`.
    pub members: Option<Vec<String>>,
    /// Top meters per direction (0 to [`MAX_TOP`]).
    pub top: u32,
}

impl CommunityQuery {
    /// Every meter, from `from` to `to`, the top 10.
    pub fn new(from: i64, to: i64) -> CommunityQuery {
        CommunityQuery {
            from,
            to,
            members: None,
            top: 10,
        }
    }
}

/// One quarter hour of the community.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CommunityQuarter {
    /// Its start, Unix seconds.
    pub start: i64,
    /// The members' import in it, summed, Wh.
    pub import_wh: i64,
    /// Their export, summed, Wh.
    pub export_wh: i64,
    /// Members with a rollup in it.
    pub meters: i64,
}

impl CommunityQuarter {
    /// The shared energy: what members exported in this quarter hour and other members
    /// consumed in the same quarter hour, `min(Σ import, Σ export)`, Wh.
    pub fn shared_wh(&self) -> i64 {
        self.import_wh.min(self.export_wh)
    }
}

/// A meter of the top lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TopMeter {
    /// Its name.
    pub name: String,
    /// Its energy over the range, Wh.
    pub energy_wh: i64,
}

/// The community view's figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Community {
    /// Members asked for (every stored meter, or those named).
    pub members: u64,
    /// Members with a rollup in the range.
    pub reporting: u64,
    /// Quarter hours with a rollup of some member, by start.
    pub quarters: Vec<CommunityQuarter>,
    /// The members that imported most over the range, most first (ties by name).
    pub top_import: Vec<TopMeter>,
    /// The members that exported most, most first.
    pub top_export: Vec<TopMeter>,
}

fn ts(seconds: i64) -> Timestamp {
    Timestamp::from_second(seconds).unwrap_or(if seconds < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// `%text%` for `ILIKE`, with `%`, `_` and `\` in `text` matching themselves.
fn like_pattern(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// The meters of the fleet, with their names, system titles and ids, matching `$1` (a
/// pattern, or NULL for all).
const MEMBERS: &str = "member AS (
  SELECT coalesce(m.name, k.name) AS name, m.id, k.system_title, m.meter_id
  FROM meter AS m FULL JOIN fleet_key AS k ON k.name = m.name
  WHERE $1::text IS NULL OR coalesce(m.name, k.name) ILIKE $1 OR k.system_title ILIKE $1
)";

/// The last stored reading (`last_ts`) of member `p`.
const LAST_SEEN: &str = "LEFT JOIN LATERAL (
  SELECT last_ts FROM agg_15m WHERE meter = p.id ORDER BY start DESC LIMIT 1
) AS l ON true";

/// The state of member `p`, with `rejected_at` its last rejection and `$2` the stale cutoff.
const STATE: &str = "CASE
  WHEN r.rejected_at >= $2 AND r.rejected_at > coalesce(l.last_ts, '-infinity') THEN 'rejecting'
  WHEN l.last_ts IS NULL OR l.last_ts < $2 THEN 'stale'
  ELSE 'ok' END";

/// The last rejection of member `p` (`rejected_at`).
const REJECTED_AT: &str = "LEFT JOIN LATERAL (
  SELECT max(last_at) AS rejected_at FROM fleet_rejection WHERE meter = p.name
) AS r ON true";

/// The list's figures of the meters named `names`, by name.
fn details(
    client: &mut postgres::Client,
    names: &[String],
    stale: Timestamp,
    today_start: i64,
) -> Result<Vec<FleetMeter>, StoreError> {
    let rows = client.query(
        &format!(
            "WITH p AS (
               SELECT n.name, m.id, k.system_title, m.meter_id
               FROM unnest($1::text[]) AS n(name)
               LEFT JOIN meter AS m ON m.name = n.name
               LEFT JOIN fleet_key AS k ON k.name = n.name
               WHERE m.id IS NOT NULL OR k.name IS NOT NULL
             )
             SELECT p.name, p.system_title, p.meter_id, l.last_ts, t.import_wh, t.export_wh,
                    {STATE}, rl.reasons, rl.counts, rl.lasts
             FROM p {LAST_SEEN} {REJECTED_AT}
             LEFT JOIN LATERAL (
               SELECT array_agg(reason ORDER BY reason) AS reasons,
                      array_agg(count ORDER BY reason) AS counts,
                      array_agg(last_at ORDER BY reason) AS lasts
               FROM fleet_rejection WHERE meter = p.name
             ) AS rl ON true
             LEFT JOIN LATERAL (
               SELECT sum(energy_import_wh)::bigint AS import_wh,
                      sum(energy_export_wh)::bigint AS export_wh
               FROM agg_15m WHERE meter = p.id AND start >= $3
             ) AS t ON true
             ORDER BY p.name"
        ),
        &[&names, &stale, &ts(today_start)],
    )?;
    Ok(rows
        .iter()
        .map(|row| {
            let reasons: Option<Vec<String>> = row.get(7);
            let counts: Option<Vec<i64>> = row.get(8);
            let lasts: Option<Vec<Option<Timestamp>>> = row.get(9);
            let rejections = reasons
                .unwrap_or_default()
                .into_iter()
                .zip(counts.unwrap_or_default())
                .zip(lasts.unwrap_or_default())
                .map(|((reason, count), last)| RejectionCount {
                    reason,
                    count,
                    last_at: last.map(|t| t.as_second()),
                })
                .collect();
            let state: String = row.get(6);
            FleetMeter {
                name: row.get(0),
                system_title: row.get(1),
                meter_id: row.get(2),
                last_seen: row.get::<_, Option<Timestamp>>(3).map(|t| t.as_second()),
                today_import_wh: row.get(4),
                today_export_wh: row.get(5),
                rejections,
                state: MeterState::from_name(&state).unwrap_or(MeterState::Stale),
            }
        })
        .collect())
}

impl ReadConnection {
    /// A page of the fleet's meters, by name: last seen, today's energies, rejections and
    /// state (module documentation).
    ///
    /// # Errors
    /// [`StoreError::Config`] for an SQLite store, database errors.
    pub fn fleet_meters(&self, q: &MeterListQuery) -> Result<MeterPage, StoreError> {
        let q = q.clone();
        self.with_postgres(move |client| {
            let pattern = q
                .search
                .as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(like_pattern);
            let stale = ts(q.now - q.stale_after_s);
            let limit = i64::from(q.limit.clamp(1, MAX_PAGE));
            let offset = i64::try_from(q.offset).unwrap_or(i64::MAX);
            // The page's names first: with a state, every matching meter's state decides.
            let (names, total): (Vec<String>, i64) = match q.state {
                None => {
                    // The page and the count in one pass over the names.
                    let rows = client.query(
                        &format!(
                            "WITH {MEMBERS} SELECT name, count(*) OVER () FROM member
                             ORDER BY name LIMIT $2 OFFSET $3"
                        ),
                        &[&pattern, &limit, &offset],
                    )?;
                    let total = match rows.first() {
                        Some(row) => row.get(1),
                        None if offset == 0 => 0,
                        None => client
                            .query_one(&format!("WITH {MEMBERS} SELECT count(*) FROM member"), &[
                                &pattern,
                            ])?
                            .get(0),
                    };
                    (rows.iter().map(|row| row.get(0)).collect(), total)
                }
                Some(state) => {
                    let rows = client.query(
                        &format!(
                            "WITH {MEMBERS}, judged AS (
                               SELECT p.name, {STATE} AS state FROM member AS p {LAST_SEEN} {REJECTED_AT}
                             )
                             SELECT name, count(*) OVER () FROM judged WHERE state = $3
                             ORDER BY name LIMIT $4 OFFSET $5"
                        ),
                        &[&pattern, &stale, &state.as_str(), &limit, &offset],
                    )?;
                    let total = match rows.first() {
                        Some(row) => row.get(1),
                        None if offset == 0 => 0,
                        None => client
                            .query_one(
                                &format!(
                                    "WITH {MEMBERS}, judged AS (
                                       SELECT {STATE} AS state FROM member AS p {LAST_SEEN} {REJECTED_AT}
                                     )
                                     SELECT count(*) FROM judged WHERE state = $3"
                                ),
                                &[&pattern, &stale, &state.as_str()],
                            )?
                            .get(0),
                    };
                    (rows.iter().map(|row| row.get(0)).collect(), total)
                }
            };
            let meters = details(client, &names, stale, q.today_start)?;
            Ok(MeterPage {
                total: u64::try_from(total).unwrap_or(0),
                meters,
            })
        })
    }

    /// The list's figures of the fleet meter named `name` (as [`ReadConnection::fleet_meters`]
    /// gives them), if there is one.
    ///
    /// # Errors
    /// [`StoreError::Config`] for an SQLite store, database errors.
    pub fn fleet_meter(
        &self,
        name: &str,
        now: i64,
        today_start: i64,
        stale_after_s: i64,
    ) -> Result<Option<FleetMeter>, StoreError> {
        let names = vec![name.to_owned()];
        self.with_postgres(move |client| {
            Ok(details(client, &names, ts(now - stale_after_s), today_start)?.pop())
        })
    }

    /// How many of the fleet's meters are in each state at `now`, stale after
    /// `stale_after_s`. Judges every meter (a probe of `agg_15m` each).
    ///
    /// # Errors
    /// [`StoreError::Config`] for an SQLite store, database errors.
    pub fn fleet_states(&self, now: i64, stale_after_s: i64) -> Result<StateCounts, StoreError> {
        self.with_postgres(move |client| {
            let stale = ts(now - stale_after_s);
            let none: Option<String> = None;
            let rows = client.query(
                &format!(
                    "WITH {MEMBERS}
                     SELECT {STATE} AS state, count(*) FROM member AS p {LAST_SEEN} {REJECTED_AT}
                     GROUP BY 1"
                ),
                &[&none, &stale],
            )?;
            let mut counts = StateCounts::default();
            for row in &rows {
                let state: String = row.get(0);
                let n = u64::try_from(row.get::<_, i64>(1)).unwrap_or(0);
                counts.meters += n;
                match MeterState::from_name(&state) {
                    Some(MeterState::Ok) => counts.ok += n,
                    Some(MeterState::Rejecting) => counts.rejecting += n,
                    _ => counts.stale += n,
                }
            }
            Ok(counts)
        })
    }

    /// The rejections of senders that are not meters of the fleet (neither stored nor with
    /// a key), the most recent first, at most `limit`; and how many there are.
    ///
    /// # Errors
    /// [`StoreError::Config`] for an SQLite store, database errors.
    pub fn fleet_unknown_senders(
        &self,
        limit: u32,
    ) -> Result<(u64, Vec<UnknownSender>), StoreError> {
        self.with_postgres(move |client| {
            let total: i64 = client
                .query_one(
                    "SELECT count(*) FROM fleet_rejection AS r
                     WHERE NOT EXISTS (SELECT 1 FROM meter AS m WHERE m.name = r.meter)
                       AND NOT EXISTS (SELECT 1 FROM fleet_key AS k WHERE k.name = r.meter)",
                    &[],
                )?
                .get(0);
            let senders = client
                .query(
                    "SELECT r.meter, r.reason, r.count, r.last_at FROM fleet_rejection AS r
                     WHERE NOT EXISTS (SELECT 1 FROM meter AS m WHERE m.name = r.meter)
                       AND NOT EXISTS (SELECT 1 FROM fleet_key AS k WHERE k.name = r.meter)
                     ORDER BY r.last_at DESC, r.meter, r.reason LIMIT $1",
                    &[&i64::from(limit)],
                )?
                .iter()
                .map(|row| UnknownSender {
                    sender: row.get(0),
                    reason: row.get(1),
                    count: row.get(2),
                    last_at: row.get::<_, Option<Timestamp>>(3).map(|t| t.as_second()),
                })
                .collect();
            Ok((u64::try_from(total).unwrap_or(0), senders))
        })
    }

    /// The community view (module documentation): per quarter hour of `[from, to)` the
    /// members' import and export summed, and the members that imported and exported most.
    ///
    /// # Errors
    /// [`StoreError::UnknownMeter`] for a member name that is not stored,
    /// [`StoreError::Config`] for an SQLite store, database errors.
    pub fn community(&self, q: &CommunityQuery) -> Result<Community, StoreError> {
        let q = q.clone();
        self.with_postgres(move |client| {
            let ids: Vec<i32> = match &q.members {
                None => client
                    .query("SELECT id FROM meter", &[])?
                    .iter()
                    .map(|row| row.get(0))
                    .collect(),
                Some(names) => {
                    let rows = client
                        .query("SELECT id, name FROM meter WHERE name = ANY($1)", &[names])?;
                    if let Some(missing) = names
                        .iter()
                        .find(|n| !rows.iter().any(|r| r.get::<_, &str>(1) == n.as_str()))
                    {
                        return Err(StoreError::UnknownMeter(missing.clone()));
                    }
                    rows.iter().map(|row| row.get(0)).collect()
                }
            };
            let (from, to) = (ts(q.from), ts(q.to));
            // One index range scan of agg_15m per member (OFFSET 0 keeps the subquery
            // per member instead of a join over the whole table).
            let quarters = client
                .query(
                    "SELECT a.start, coalesce(sum(a.energy_import_wh), 0)::bigint,
                            coalesce(sum(a.energy_export_wh), 0)::bigint, count(*)
                     FROM unnest($1::int[]) AS m(id)
                     CROSS JOIN LATERAL (
                       SELECT start, energy_import_wh, energy_export_wh FROM agg_15m
                       WHERE meter = m.id AND start >= $2 AND start < $3 OFFSET 0
                     ) AS a
                     GROUP BY a.start ORDER BY a.start",
                    &[&ids, &from, &to],
                )?
                .iter()
                .map(|row| CommunityQuarter {
                    start: row.get::<_, Timestamp>(0).as_second(),
                    import_wh: row.get(1),
                    export_wh: row.get(2),
                    meters: row.get(3),
                })
                .collect();
            let top = i64::from(q.top.min(MAX_TOP));
            let rows = client.query(
                "WITH per AS (
                   SELECT mt.name, a.import_wh, a.export_wh
                   FROM unnest($1::int[]) AS m(id)
                   JOIN meter AS mt ON mt.id = m.id
                   CROSS JOIN LATERAL (
                     SELECT sum(energy_import_wh)::bigint AS import_wh,
                            sum(energy_export_wh)::bigint AS export_wh, count(*) AS n
                     FROM agg_15m WHERE meter = m.id AND start >= $2 AND start < $3
                   ) AS a
                   WHERE a.n > 0
                 )
                 (SELECT 'import' AS direction, name, import_wh AS e FROM per
                  WHERE import_wh > 0 ORDER BY import_wh DESC, name LIMIT $4)
                 UNION ALL
                 (SELECT 'export', name, export_wh FROM per
                  WHERE export_wh > 0 ORDER BY export_wh DESC, name LIMIT $4)
                 UNION ALL
                 SELECT 'count', '', count(*) FROM per",
                &[&ids, &from, &to, &top],
            )?;
            let mut community = Community {
                members: ids.len() as u64,
                reporting: 0,
                quarters,
                top_import: Vec::new(),
                top_export: Vec::new(),
            };
            for row in &rows {
                let direction: &str = row.get(0);
                let entry = TopMeter {
                    name: row.get(1),
                    energy_wh: row.get(2),
                };
                match direction {
                    "import" => community.top_import.push(entry),
                    "export" => community.top_export.push(entry),
                    _ => community.reporting = u64::try_from(entry.energy_wh).unwrap_or(0),
                }
            }
            for list in [&mut community.top_import, &mut community.top_export] {
                list.sort_by(|a, b| b.energy_wh.cmp(&a.energy_wh).then(a.name.cmp(&b.name)));
            }
            Ok(community)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_their_text_literally() {
        assert_eq!(like_pattern("ab"), "%ab%");
        assert_eq!(like_pattern("5%_\\"), "%5\\%\\_\\\\%");
    }

    #[test]
    fn states_by_name() {
        for s in [MeterState::Ok, MeterState::Stale, MeterState::Rejecting] {
            assert_eq!(MeterState::from_name(s.as_str()), Some(s));
        }
        assert_eq!(MeterState::from_name("fine"), None);
        let q = CommunityQuarter {
            start: 0,
            import_wh: 5,
            export_wh: 3,
            meters: 2,
        };
        assert_eq!(q.shared_wh(), 3);
    }
}
