//! The PostgreSQL backend's statements ([`Db`] over a client or a transaction).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::LazyLock;

use jiff::Timestamp;
use jiff::civil::Date;
use postgres::types::ToSql;
use postgres::{GenericClient, Statement};

use crate::StoreError;
use crate::aggregate::{Agg, select_list, sql_columns};
use crate::block::{BLOCK_S, Row, block_start};
use crate::db::{AggColumn, AggTable, AggWindow, BatchDb, Db, DbResult};
use crate::query::{MbusChannel, StoredMeter};
use crate::reading::{Aggregation, COLUMNS, NCOL};
use smarty_model::period::{INTERVAL_S, Interval};

/// The statements of [`Db`] on a PostgreSQL client or transaction, prepared once per
/// connection ([`Statements`]).
pub(crate) struct PgDb<'c, C: GenericClient> {
    /// Where the statements run.
    pub(crate) client: &'c mut C,
    /// The connection's prepared statements.
    pub(crate) statements: &'c mut Statements,
}

/// What one connection keeps between statements: its prepared statements, and the M-Bus
/// channels it saw committed.
#[derive(Default)]
pub(crate) struct Statements {
    /// The prepared statements, by their SQL.
    prepared: HashMap<String, Statement>,
    /// The medium and unit of M-Bus channels, by meter and channel, as a transaction that
    /// committed wrote them: [`Db::mbus_channel_upsert`] of the same values sends nothing (a
    /// telegram repeats its channels, so an import upserted each one twice a telegram).
    /// Only committed rows are kept — a row this connection's open transaction wrote could
    /// still be rolled back — and nothing deletes a channel; a channel another process
    /// changes is written again when this one's medium or unit changes.
    channels: HashMap<(i32, i16), (String, String)>,
}

impl<C: GenericClient> PgDb<'_, C> {
    /// The prepared statement of `sql` (prepared on first use).
    fn statement(&mut self, sql: &str) -> DbResult<Statement> {
        if let Some(statement) = self.statements.prepared.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.statements
            .prepared
            .insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    fn query(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> DbResult<Vec<postgres::Row>> {
        let statement = self.statement(sql)?;
        Ok(self.client.query(&statement, params)?)
    }

    fn query_one(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> DbResult<postgres::Row> {
        let statement = self.statement(sql)?;
        Ok(self.client.query_one(&statement, params)?)
    }

    fn query_opt(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> DbResult<Option<postgres::Row>> {
        let statement = self.statement(sql)?;
        Ok(self.client.query_opt(&statement, params)?)
    }

    fn execute(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> DbResult<u64> {
        let statement = self.statement(sql)?;
        Ok(self.client.execute(&statement, params)?)
    }
}

/// Unix seconds as a `timestamptz`.
fn ts(seconds: i64) -> Timestamp {
    Timestamp::from_second(seconds).unwrap_or(if seconds < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// A `timestamptz` as Unix seconds.
fn secs(t: Timestamp) -> i64 {
    t.as_second()
}

/// Query bounds: PostgreSQL's `timestamptz` spans less than `i64` seconds, so open ranges
/// (`i64::MIN`, `i64::MAX`) become its far past and future.
fn bound(seconds: i64) -> Timestamp {
    const LOW: i64 = -200_000_000_000; // about 4,300 BC, within PostgreSQL's range
    const HIGH: i64 = 200_000_000_000; // about 8,300 AD
    ts(seconds.clamp(LOW, HIGH))
}

/// `INSERT … ON CONFLICT DO UPDATE` of an aggregate table; the day table has `day` and
/// `periods` after `meter`.
fn upsert_sql(table: AggTable) -> String {
    let columns = sql_columns();
    let extra = if table == AggTable::Day { 2 } else { 0 };
    let names = if table == AggTable::Day {
        format!("meter, day, periods, {}", select_list())
    } else {
        format!("meter, {}", select_list())
    };
    let placeholders: Vec<String> = (1..=1 + extra + 4 + columns.len())
        .map(|i| format!("${i}"))
        .collect();
    let mut updates: Vec<String> = ["n", "first_ts", "last_ts"]
        .iter()
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    if table == AggTable::Day {
        updates.push("day = excluded.day".into());
        updates.push("periods = excluded.periods".into());
    }
    updates.extend(columns.iter().map(|c| format!("{c} = excluded.{c}")));
    format!(
        "INSERT INTO {} ({names}) VALUES ({}) ON CONFLICT (meter, start) DO UPDATE SET {}",
        table.name(),
        placeholders.join(", "),
        updates.join(", ")
    )
}

/// `INSERT INTO agg_15m … SELECT … FROM unnest(…) ON CONFLICT DO UPDATE`: any number of
/// aggregates in one statement, arrays in [`select_list`] order ([`agg_arrays`]).
static UPSERT_15M: LazyLock<String> = LazyLock::new(|| upsert_15m(false));

/// The upsert of 15-minute aggregates: parameter `$1` the meter (`per_row` false) or an
/// `int4[]` of meters, one per aggregate (`per_row` true); then the arrays in
/// [`select_list`] order.
fn upsert_15m(per_row: bool) -> String {
    let columns = sql_columns();
    let mut types = vec!["timestamptz[]", "int8[]", "timestamptz[]", "timestamptz[]"];
    types.extend(std::iter::repeat_n("int8[]", columns.len()));
    let arrays: Vec<String> = types
        .iter()
        .enumerate()
        .map(|(i, t)| format!("${}::{t}", i + 2))
        .collect();
    let updates: Vec<String> = ["n", "first_ts", "last_ts"]
        .iter()
        .map(|c| c.to_string())
        .chain(columns.iter().cloned())
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    format!(
        "INSERT INTO agg_15m (meter, {}) SELECT {} FROM unnest({}{})
         ON CONFLICT (meter, start) DO UPDATE SET {}",
        select_list(),
        if per_row { "*" } else { "$1, *" },
        if per_row { "$1::int4[], " } else { "" },
        arrays.join(", "),
        updates.join(", ")
    )
}

/// Readings or aggregates written per statement.
const INSERT_CHUNK: usize = 5_000;

/// The aggregates as one array per column of [`select_list`].
fn agg_arrays(aggs: &[Agg]) -> Vec<Box<dyn ToSql + Sync>> {
    let times = |f: fn(&Agg) -> i64| -> Box<dyn ToSql + Sync> {
        Box::new(aggs.iter().map(|a| ts(f(a))).collect::<Vec<Timestamp>>())
    };
    let ints = |f: &dyn Fn(&Agg) -> Option<i64>| -> Box<dyn ToSql + Sync> {
        Box::new(aggs.iter().map(f).collect::<Vec<Option<i64>>>())
    };
    let mut out = vec![
        times(|a| a.start),
        ints(&|a| Some(a.n)),
        times(|a| a.first_ts),
        times(|a| a.last_ts),
    ];
    for (c, column) in COLUMNS.iter().enumerate() {
        match column.aggregation {
            Aggregation::Energy => {
                out.push(ints(&|a| a.energy[c]));
                out.push(ints(&|a| a.first[c]));
                out.push(ints(&|a| a.last[c]));
            }
            Aggregation::Instant => {
                out.push(ints(&|a| a.sum[c]));
                out.push(ints(&|a| Some(a.count[c])));
                out.push(ints(&|a| a.min[c]));
                out.push(ints(&|a| a.max[c]));
            }
        }
    }
    out
}
static UPSERT_DAY: LazyLock<String> = LazyLock::new(|| upsert_sql(AggTable::Day));

/// `INSERT INTO reading … SELECT … FROM unnest(…) ON CONFLICT DO NOTHING RETURNING time`.
static INSERT_READINGS: LazyLock<String> = LazyLock::new(|| {
    let names: Vec<&str> = COLUMNS.iter().map(|c| c.name).collect();
    let arrays: Vec<String> = (0..NCOL).map(|i| format!("${}::int8[]", i + 3)).collect();
    format!(
        "INSERT INTO reading (meter, time, {})
         SELECT $1, * FROM unnest($2::timestamptz[], {})
         ON CONFLICT (meter, time) DO NOTHING RETURNING time",
        names.join(", "),
        arrays.join(", ")
    )
});

/// `SELECT time, <every column> FROM reading`.
static SELECT_READINGS: LazyLock<String> = LazyLock::new(|| {
    let names: Vec<&str> = COLUMNS.iter().map(|c| c.name).collect();
    format!(
        "SELECT time, {} FROM reading WHERE meter = $1 AND time >= $2 AND time < $3 ORDER BY time",
        names.join(", ")
    )
});

/// The parameters of an aggregate in [`select_list`] order.
fn agg_params(agg: &Agg) -> Vec<Box<dyn ToSql + Sync>> {
    let mut out: Vec<Box<dyn ToSql + Sync>> = vec![
        Box::new(ts(agg.start)),
        Box::new(agg.n),
        Box::new(ts(agg.first_ts)),
        Box::new(ts(agg.last_ts)),
    ];
    for (c, column) in COLUMNS.iter().enumerate() {
        match column.aggregation {
            Aggregation::Energy => {
                out.push(Box::new(agg.energy[c]));
                out.push(Box::new(agg.first[c]));
                out.push(Box::new(agg.last[c]));
            }
            Aggregation::Instant => {
                out.push(Box::new(agg.sum[c]));
                out.push(Box::new(agg.count[c]));
                out.push(Box::new(agg.min[c]));
                out.push(Box::new(agg.max[c]));
            }
        }
    }
    out
}

/// An aggregate from a row selected with [`select_list`].
fn agg_of(row: &postgres::Row) -> Agg {
    agg_at(row, 0)
}

/// An aggregate from a row whose columns from `at` on are [`select_list`]'s.
fn agg_at(row: &postgres::Row, at: usize) -> Agg {
    let mut agg = Agg::empty(secs(row.get(at)));
    agg.n = row.get(at + 1);
    agg.first_ts = secs(row.get(at + 2));
    agg.last_ts = secs(row.get(at + 3));
    let mut i = at + 4;
    for (c, column) in COLUMNS.iter().enumerate() {
        match column.aggregation {
            Aggregation::Energy => {
                agg.energy[c] = row.get(i);
                agg.first[c] = row.get(i + 1);
                agg.last[c] = row.get(i + 2);
                i += 3;
            }
            Aggregation::Instant => {
                agg.sum[c] = row.get(i);
                agg.count[c] = row.get(i + 1);
                agg.min[c] = row.get(i + 2);
                agg.max[c] = row.get(i + 3);
                i += 4;
            }
        }
    }
    agg
}

/// A reading from a row of [`SELECT_READINGS`].
fn row_of(row: &postgres::Row) -> Row {
    row_at(row, 0)
}

/// A reading from a row whose columns from `at` on are the time and every column.
fn row_at(row: &postgres::Row, at: usize) -> Row {
    let mut values = [None; NCOL];
    for (c, value) in values.iter_mut().enumerate() {
        *value = row.get(at + c + 1);
    }
    Row {
        ts: secs(row.get(at)),
        values,
    }
}

/// [`BatchDb::insert_rows`]: readings of many meters, `RETURNING meter, time`.
static INSERT_ROWS_MANY: LazyLock<String> = LazyLock::new(|| {
    let names: Vec<&str> = COLUMNS.iter().map(|c| c.name).collect();
    let arrays: Vec<String> = (0..NCOL).map(|i| format!("${}::int8[]", i + 3)).collect();
    format!(
        "INSERT INTO reading (meter, time, {})
         SELECT * FROM unnest($1::int4[], $2::timestamptz[], {})
         ON CONFLICT (meter, time) DO NOTHING RETURNING meter, time",
        names.join(", "),
        arrays.join(", ")
    )
});

/// [`BatchDb::period_rows`].
static SELECT_PERIOD_ROWS: LazyLock<String> = LazyLock::new(|| {
    let names: Vec<String> = COLUMNS.iter().map(|c| format!("r.{}", c.name)).collect();
    format!(
        "SELECT u.m, u.f, r.time, {} FROM unnest($1::int4[], $2::timestamptz[], $3::timestamptz[])
           AS u (m, f, t)
         JOIN reading AS r ON r.meter = u.m AND r.time >= u.f AND r.time < u.t
         ORDER BY 1, 3",
        names.join(", ")
    )
});

/// [`BatchDb::agg_windows`]: the part (0 before, 1 range, 2 after), then [`select_list`].
static SELECT_AGG_WINDOWS: LazyLock<String> = LazyLock::new(|| {
    let list = select_list();
    format!(
        "WITH u (m, f, t) AS (SELECT * FROM unnest($1::int4[], $2::timestamptz[], $3::timestamptz[]))
         SELECT u.m, 0, a.* FROM u CROSS JOIN LATERAL (SELECT {list} FROM agg_15m
           WHERE meter = u.m AND start < u.f ORDER BY start DESC LIMIT 1) AS a
         UNION ALL
         SELECT u.m, 1, a.* FROM u CROSS JOIN LATERAL (SELECT {list} FROM agg_15m
           WHERE meter = u.m AND start >= u.f AND start <= u.t) AS a
         UNION ALL
         SELECT u.m, 2, a.* FROM u CROSS JOIN LATERAL (SELECT {list} FROM agg_15m
           WHERE meter = u.m AND start > u.t ORDER BY start LIMIT 1) AS a
         ORDER BY 1, 2, 3"
    )
});

/// [`BatchDb::write_15m_many`]: [`UPSERT_15M`] with a meter per aggregate.
static UPSERT_15M_MANY: LazyLock<String> = LazyLock::new(|| upsert_15m(true));

/// [`BatchDb::rebuild_days`]: the days' aggregates computed by the database from their
/// 15-minute ones, as [`Agg::of_periods`] does (sums, first and last present values by
/// start, min and max).
static REBUILD_DAYS: LazyLock<String> = LazyLock::new(|| {
    let mut exprs = Vec::new();
    for column in COLUMNS {
        let c = column.name;
        match column.aggregation {
            Aggregation::Energy => {
                exprs.push(format!("sum(a.{c})::int8"));
                exprs.push(format!(
                    "(array_agg(a.{c}_first ORDER BY a.start) FILTER (WHERE a.{c}_first IS NOT NULL))[1]"
                ));
                exprs.push(format!(
                    "(array_agg(a.{c}_last ORDER BY a.start DESC) FILTER (WHERE a.{c}_last IS NOT NULL))[1]"
                ));
            }
            Aggregation::Instant => {
                exprs.push(format!("sum(a.{c}_sum)::int8"));
                exprs.push(format!("coalesce(sum(a.{c}_n), 0)::int8"));
                exprs.push(format!("min(a.{c}_min)"));
                exprs.push(format!("max(a.{c}_max)"));
            }
        }
    }
    let columns = sql_columns();
    let updates: Vec<String> = ["day", "periods", "n", "first_ts", "last_ts"]
        .iter()
        .map(|c| c.to_string())
        .chain(columns.iter().cloned())
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    format!(
        "INSERT INTO agg_day (meter, day, periods, {})
         SELECT u.m, u.d, count(*)::int4, u.s, sum(a.n)::int8, min(a.first_ts), max(a.last_ts), {}
         FROM unnest($1::int4[], $2::date[], $3::timestamptz[], $4::timestamptz[]) AS u (m, d, s, e)
         JOIN agg_15m AS a ON a.meter = u.m AND a.start >= u.s AND a.start < u.e
         GROUP BY u.m, u.d, u.s
         ON CONFLICT (meter, start) DO UPDATE SET {}",
        select_list(),
        exprs.join(", "),
        updates.join(", ")
    )
});

/// Meter ids as the `integer`s of the `meter` table.
fn meter_keys(meters: impl Iterator<Item = i64>) -> Result<Vec<i32>, StoreError> {
    meters.map(meter_key).collect()
}

fn params(values: &[Box<dyn ToSql + Sync>]) -> Vec<&(dyn ToSql + Sync)> {
    values.iter().map(|b| b.as_ref()).collect()
}

impl<C: GenericClient> Db for PgDb<'_, C> {
    fn as_batch(&mut self) -> Option<&mut dyn BatchDb> {
        Some(self)
    }

    fn meter_upsert(
        &mut self,
        name: &str,
        sent_id: Option<&str>,
    ) -> DbResult<(i64, Option<String>)> {
        // No row lock unless something changes: writers of several processes share meters.
        self.execute(
            "INSERT INTO meter (name, meter_id) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            &[&name, &sent_id],
        )?;
        if sent_id.is_some() {
            self.execute(
                "UPDATE meter SET meter_id = $2 WHERE name = $1 AND meter_id IS DISTINCT FROM $2",
                &[&name, &sent_id],
            )?;
        }
        let row = self.query_one("SELECT id, meter_id FROM meter WHERE name = $1", &[&name])?;
        Ok((i64::from(row.get::<_, i32>(0)), row.get(1)))
    }

    fn meter_by_name(&mut self, name: &str) -> DbResult<Option<i64>> {
        Ok(self
            .query_opt("SELECT id FROM meter WHERE name = $1", &[&name])?
            .map(|row| i64::from(row.get::<_, i32>(0))))
    }

    fn meters(&mut self, name: Option<&str>) -> DbResult<Vec<(i64, StoredMeter)>> {
        let rows = self.query(
            "SELECT id, name, meter_id,
               (SELECT first_ts FROM agg_15m WHERE meter = m.id ORDER BY start LIMIT 1),
               (SELECT last_ts FROM agg_15m WHERE meter = m.id ORDER BY start DESC LIMIT 1)
             FROM meter AS m WHERE $1::text IS NULL OR name = $1 ORDER BY name",
            &[&name],
        )?;
        Ok(rows
            .iter()
            .map(|row| {
                (
                    i64::from(row.get::<_, i32>(0)),
                    StoredMeter {
                        name: row.get(1),
                        meter_id: row.get(2),
                        first_reading: row.get::<_, Option<Timestamp>>(3).map(secs),
                        last_reading: row.get::<_, Option<Timestamp>>(4).map(secs),
                        mbus: Vec::new(),
                    },
                )
            })
            .collect())
    }

    fn lock_meter(&mut self, meter: i64) -> DbResult<()> {
        // Two keys: a constant ("smarty-m") and the meter.
        self.execute(
            "SELECT pg_advisory_xact_lock(1936548449, $1::int4)",
            &[&meter_key(meter)?],
        )?;
        Ok(())
    }

    fn raw_rows(&mut self, meter: i64, from: i64, to: i64) -> DbResult<Vec<Row>> {
        Ok(self
            .query(
                SELECT_READINGS.as_str(),
                &[&meter_key(meter)?, &bound(from), &bound(to)],
            )?
            .iter()
            .map(row_of)
            .collect())
    }

    fn add_rows(
        &mut self,
        meter: i64,
        periods: &[(i64, &[Row], &[Row])],
    ) -> DbResult<Vec<(usize, Vec<Row>)>> {
        let key = meter_key(meter)?;
        let new: Vec<Row> = periods
            .iter()
            .flat_map(|(_, _, new)| new.iter().copied())
            .collect();
        let mut inserted = BTreeSet::new();
        for chunk in new.chunks(INSERT_CHUNK) {
            let times: Vec<Timestamp> = chunk.iter().map(|r| ts(r.ts)).collect();
            let columns: Vec<Vec<Option<i64>>> = (0..NCOL)
                .map(|c| chunk.iter().map(|r| r.values[c]).collect())
                .collect();
            let mut parameters: Vec<&(dyn ToSql + Sync)> = vec![&key, &times];
            parameters.extend(columns.iter().map(|c| c as &(dyn ToSql + Sync)));
            inserted.extend(
                self.query(INSERT_READINGS.as_str(), &parameters)?
                    .iter()
                    .map(|row| secs(row.get(0))),
            );
        }
        Ok(periods
            .iter()
            .map(|(_, before, new)| {
                let mut rows = before.to_vec();
                let mut added = 0;
                for row in new.iter() {
                    // A time given twice in the batch is inserted once.
                    if inserted.remove(&row.ts) {
                        rows.push(*row);
                        added += 1;
                    }
                }
                rows.sort_by_key(|r| r.ts);
                (added, rows)
            })
            .collect())
    }

    fn raw_count(&mut self, meter: i64, from: i64, to: i64) -> DbResult<i64> {
        Ok(self
            .query_one(
                "SELECT count(*) FROM reading WHERE meter = $1 AND time >= $2 AND time < $3",
                &[&meter_key(meter)?, &bound(from), &bound(to)],
            )?
            .get(0))
    }

    fn raw_column(
        &mut self,
        meter: i64,
        c: usize,
        from: i64,
        to: i64,
    ) -> DbResult<Vec<(i64, i64)>> {
        let name = COLUMNS[c].name;
        Ok(self
            .query(
                &format!(
                    "SELECT time, {name} FROM reading WHERE meter = $1 AND time >= $2 AND time < $3
                     AND {name} IS NOT NULL ORDER BY time"
                ),
                &[&meter_key(meter)?, &bound(from), &bound(to)],
            )?
            .iter()
            .map(|row| (secs(row.get(0)), row.get(1)))
            .collect())
    }

    fn raw_column_before(
        &mut self,
        meter: i64,
        c: usize,
        before: i64,
    ) -> DbResult<Option<(i64, i64)>> {
        let name = COLUMNS[c].name;
        // The same hour as SQLite looks in: the block holding `before` and the twelve before.
        let since = block_start(before) - 12 * BLOCK_S;
        Ok(self
            .query_opt(
                &format!(
                    "SELECT time, {name} FROM reading WHERE meter = $1 AND time >= $2 AND time < $3
                     AND {name} IS NOT NULL ORDER BY time DESC LIMIT 1"
                ),
                &[&meter_key(meter)?, &bound(since), &bound(before)],
            )?
            .map(|row| (secs(row.get(0)), row.get(1))))
    }

    fn prune_raw(&mut self, cutoff: i64) -> DbResult<u64> {
        self.execute("DELETE FROM reading WHERE time < $1", &[&bound(cutoff)])
    }

    fn agg_starts(&mut self, meter: i64, from: i64, to: i64) -> DbResult<Vec<i64>> {
        Ok(self
            .query(
                "SELECT start FROM agg_15m WHERE meter = $1 AND start >= $2 AND start < $3",
                &[&meter_key(meter)?, &bound(from), &bound(to)],
            )?
            .iter()
            .map(|row| secs(row.get(0)))
            .collect())
    }

    fn write_15m(&mut self, meter: i64, aggs: &[Agg]) -> DbResult<()> {
        let key = meter_key(meter)?;
        for chunk in aggs.chunks(INSERT_CHUNK) {
            let arrays = agg_arrays(chunk);
            let mut parameters: Vec<&(dyn ToSql + Sync)> = vec![&key];
            parameters.extend(arrays.iter().map(|a| a.as_ref()));
            self.execute(UPSERT_15M.as_str(), &parameters)?;
        }
        Ok(())
    }

    fn write_day(&mut self, meter: i64, day: Date, periods: usize, agg: &Agg) -> DbResult<()> {
        let periods = i32::try_from(periods).unwrap_or(i32::MAX);
        let mut values: Vec<Box<dyn ToSql + Sync>> = vec![
            Box::new(meter_key(meter)?),
            Box::new(day),
            Box::new(periods),
        ];
        values.extend(agg_params(agg));
        self.execute(UPSERT_DAY.as_str(), &params(&values))?;
        Ok(())
    }

    fn delete_day(&mut self, meter: i64, start: i64) -> DbResult<()> {
        self.execute(
            "DELETE FROM agg_day WHERE meter = $1 AND start = $2",
            &[&meter_key(meter)?, &ts(start)],
        )?;
        Ok(())
    }

    fn read_aggs(&mut self, table: AggTable, meter: i64, from: i64, to: i64) -> DbResult<Vec<Agg>> {
        Ok(self.query(
                &format!(
                    "SELECT {} FROM {} WHERE meter = $1 AND start >= $2 AND start < $3 ORDER BY start",
                    select_list(),
                    table.name()
                ),
                &[&meter_key(meter)?, &bound(from), &bound(to)],
            )?
            .iter()
            .map(agg_of)
            .collect())
    }

    fn last_15m_before(&mut self, meter: i64, before: i64) -> DbResult<Option<Agg>> {
        Ok(self.query_opt(
                &format!(
                    "SELECT {} FROM agg_15m WHERE meter = $1 AND start < $2 ORDER BY start DESC LIMIT 1",
                    select_list()
                ),
                &[&meter_key(meter)?, &bound(before)],
            )?
            .as_ref()
            .map(agg_of))
    }

    fn page_15m(&mut self, meter: i64, from: i64, limit: usize) -> DbResult<Vec<Agg>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        Ok(self.query(
                &format!(
                    "SELECT {} FROM agg_15m WHERE meter = $1 AND start >= $2 ORDER BY start LIMIT $3",
                    select_list()
                ),
                &[&meter_key(meter)?, &bound(from), &limit],
            )?
            .iter()
            .map(agg_of)
            .collect())
    }

    fn count_15m(&mut self, meter: i64, from: i64, to: i64) -> DbResult<i64> {
        Ok(self
            .query_one(
                "SELECT count(*) FROM agg_15m WHERE meter = $1 AND start >= $2 AND start < $3",
                &[&meter_key(meter)?, &bound(from), &bound(to)],
            )?
            .get(0))
    }

    fn agg_column(
        &mut self,
        table: AggTable,
        meter: i64,
        c: usize,
        from: i64,
        to: i64,
    ) -> DbResult<Vec<(i64, AggColumn)>> {
        let name = COLUMNS[c].name;
        let fields = match COLUMNS[c].aggregation {
            Aggregation::Energy => format!("{name}, NULL::int8, 0::int8, NULL::int8, NULL::int8"),
            Aggregation::Instant => {
                format!("NULL::int8, {name}_sum, {name}_n, {name}_min, {name}_max")
            }
        };
        Ok(self
            .query(
                &format!(
                    "SELECT start, {fields} FROM {} WHERE meter = $1 AND start >= $2 AND start < $3
                     ORDER BY start",
                    table.name()
                ),
                &[&meter_key(meter)?, &bound(from), &bound(to)],
            )?
            .iter()
            .map(|row| {
                (
                    secs(row.get(0)),
                    AggColumn {
                        energy: row.get(1),
                        sum: row.get(2),
                        n: row.get(3),
                        min: row.get(4),
                        max: row.get(5),
                    },
                )
            })
            .collect())
    }

    fn intervals(&mut self, meter: i64, from: i64, to: i64) -> DbResult<Vec<Interval>> {
        Ok(self
            .query(
                "SELECT start, energy_import_wh, energy_export_wh FROM agg_15m
                 WHERE meter = $1 AND start >= $2 AND start < $3 ORDER BY start",
                &[&meter_key(meter)?, &bound(from), &bound(to)],
            )?
            .iter()
            .map(|row| Interval {
                start: secs(row.get(0)),
                energy_import_wh: row.get::<_, Option<i64>>(1).unwrap_or(0),
                energy_export_wh: row.get::<_, Option<i64>>(2).unwrap_or(0),
            })
            .collect())
    }

    fn frame_counters(&mut self, meter: &str, key_check: &str) -> DbResult<Vec<(String, i64)>> {
        Ok(self
            .query(
                "SELECT system_title, counter FROM frame_counter WHERE meter = $1 AND key_check = $2
                 ORDER BY system_title",
                &[&meter, &key_check],
            )?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect())
    }

    fn save_frame_counters(
        &mut self,
        meter: &str,
        key_check: &str,
        counters: &[(String, i64)],
    ) -> DbResult<()> {
        self.execute(
            "DELETE FROM frame_counter WHERE meter = $1 AND key_check <> $2",
            &[&meter, &key_check],
        )?;
        let titles: Vec<&str> = counters.iter().map(|(t, _)| t.as_str()).collect();
        let values: Vec<i64> = counters.iter().map(|(_, c)| *c).collect();
        self.execute(
            "INSERT INTO frame_counter (meter, system_title, key_check, counter)
             SELECT $1, t, $2, c FROM unnest($3::text[], $4::int8[]) AS u (t, c)
             ON CONFLICT (meter, system_title) DO UPDATE SET
             counter = CASE WHEN frame_counter.key_check = excluded.key_check
                 THEN greatest(frame_counter.counter, excluded.counter) ELSE excluded.counter END,
             key_check = excluded.key_check, updated_at = now()",
            &[&meter, &key_check, &titles, &values],
        )?;
        Ok(())
    }

    fn mbus_channels(&mut self, meter: i64) -> DbResult<Vec<MbusChannel>> {
        Ok(self
            .query(
                "SELECT channel, medium, unit FROM mbus_channel WHERE meter = $1 ORDER BY channel",
                &[&meter_key(meter)?],
            )?
            .iter()
            .map(|row| MbusChannel {
                channel: u8::try_from(row.get::<_, i16>(0)).unwrap_or(0),
                medium: row.get(1),
                unit: row.get(2),
            })
            .collect())
    }

    fn mbus_channel_upsert(
        &mut self,
        meter: i64,
        channel: u8,
        medium: &str,
        unit: &str,
    ) -> DbResult<()> {
        let key = (meter_key(meter)?, i16::from(channel));
        if self
            .statements
            .channels
            .get(&key)
            .is_some_and(|(m, u)| m == medium && u == unit)
        {
            return Ok(());
        }
        // The upsert, and whether the row was there already with these values, written by a
        // transaction that committed (`before` sees the row as it was before the upsert;
        // `xmin` is the transaction that wrote it).
        let committed = self
            .query_opt(
                "WITH before AS (
                   SELECT medium = $3 AND unit = $4 AND xmin <> pg_current_xact_id()::xid AS same
                   FROM mbus_channel WHERE meter = $1 AND channel = $2
                 ), upsert AS (
                   INSERT INTO mbus_channel (meter, channel, medium, unit) VALUES ($1, $2, $3, $4)
                   ON CONFLICT (meter, channel) DO UPDATE SET medium = excluded.medium, unit = excluded.unit
                   WHERE mbus_channel.medium <> excluded.medium OR mbus_channel.unit <> excluded.unit
                 )
                 SELECT same FROM before",
                &[&key.0, &key.1, &medium, &unit],
            )?
            .is_some_and(|row| row.get::<_, bool>(0));
        if committed {
            self.statements
                .channels
                .insert(key, (medium.to_owned(), unit.to_owned()));
        } else {
            self.statements.channels.remove(&key);
        }
        Ok(())
    }

    fn mbus_insert(&mut self, meter: i64, channel: u8, at: i64, value_milli: i64) -> DbResult<u64> {
        self.execute(
            "INSERT INTO mbus_reading (meter, channel, time, value_milli) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING",
            &[
                &meter_key(meter)?,
                &i16::from(channel),
                &ts(at),
                &value_milli,
            ],
        )
    }

    fn mbus_before(
        &mut self,
        meter: i64,
        channel: u8,
        before: i64,
    ) -> DbResult<Option<(i64, i64)>> {
        Ok(self
            .query_opt(
                "SELECT time, value_milli FROM mbus_reading WHERE meter = $1 AND channel = $2
                 AND time < $3 ORDER BY time DESC LIMIT 1",
                &[&meter_key(meter)?, &i16::from(channel), &bound(before)],
            )?
            .map(|row| (secs(row.get(0)), row.get(1))))
    }

    fn mbus_at_or_after(
        &mut self,
        meter: i64,
        channel: u8,
        at: i64,
    ) -> DbResult<Option<(i64, i64)>> {
        Ok(self
            .query_opt(
                "SELECT time, value_milli FROM mbus_reading WHERE meter = $1 AND channel = $2
                 AND time >= $3 ORDER BY time LIMIT 1",
                &[&meter_key(meter)?, &i16::from(channel), &bound(at)],
            )?
            .map(|row| (secs(row.get(0)), row.get(1))))
    }

    fn mbus_range(
        &mut self,
        meter: i64,
        channel: u8,
        from: i64,
        to: i64,
    ) -> DbResult<Vec<(i64, i64)>> {
        Ok(self
            .query(
                "SELECT time, value_milli FROM mbus_reading WHERE meter = $1 AND channel = $2
                 AND time >= $3 AND time < $4 ORDER BY time",
                &[
                    &meter_key(meter)?,
                    &i16::from(channel),
                    &bound(from),
                    &bound(to),
                ],
            )?
            .iter()
            .map(|row| (secs(row.get(0)), row.get(1)))
            .collect())
    }

    fn mbus_edge(
        &mut self,
        meter: i64,
        channel: u8,
        from: i64,
        to: i64,
        last: bool,
    ) -> DbResult<Option<i64>> {
        let order = if last { "DESC" } else { "ASC" };
        Ok(self
            .query_opt(
                &format!(
                    "SELECT time FROM mbus_reading WHERE meter = $1 AND channel = $2
                     AND time >= $3 AND time < $4 ORDER BY time {order} LIMIT 1"
                ),
                &[
                    &meter_key(meter)?,
                    &i16::from(channel),
                    &bound(from),
                    &bound(to),
                ],
            )?
            .map(|row| secs(row.get(0))))
    }

    fn mbus_count(&mut self, meter: i64, channel: u8, from: i64, to: i64) -> DbResult<i64> {
        Ok(self
            .query_one(
                "SELECT count(*) FROM mbus_reading WHERE meter = $1 AND channel = $2
                 AND time >= $3 AND time < $4",
                &[
                    &meter_key(meter)?,
                    &i16::from(channel),
                    &bound(from),
                    &bound(to),
                ],
            )?
            .get(0))
    }
}

impl<C: GenericClient> BatchDb for PgDb<'_, C> {
    fn meter_upsert_many(
        &mut self,
        meters: &[(&str, Option<&str>)],
    ) -> DbResult<HashMap<String, (i64, Option<String>)>> {
        let names: Vec<&str> = meters.iter().map(|m| m.0).collect();
        let ids: Vec<Option<&str>> = meters.iter().map(|m| m.1).collect();
        // As meter_upsert: no row lock unless something changes; inserted in the order of
        // the names (writers inserting the same new meters wait for each other in a line).
        self.execute(
            "INSERT INTO meter (name, meter_id) SELECT * FROM unnest($1::text[], $2::text[])
             ON CONFLICT (name) DO NOTHING",
            &[&names, &ids],
        )?;
        self.execute(
            "UPDATE meter SET meter_id = u.i FROM unnest($1::text[], $2::text[]) AS u (n, i)
             WHERE meter.name = u.n AND u.i IS NOT NULL AND meter.meter_id IS DISTINCT FROM u.i",
            &[&names, &ids],
        )?;
        Ok(self
            .query(
                "SELECT name, id, meter_id FROM meter WHERE name = ANY($1::text[])",
                &[&names],
            )?
            .iter()
            .map(|row| (row.get(0), (i64::from(row.get::<_, i32>(1)), row.get(2))))
            .collect())
    }

    fn lock_meters(&mut self, meters: &[i64]) -> DbResult<()> {
        let keys = meter_keys(meters.iter().copied())?;
        self.execute(
            "SELECT pg_advisory_xact_lock(1936548449, m) FROM unnest($1::int4[]) AS u (m)",
            &[&keys],
        )?;
        Ok(())
    }

    fn periods_with_rows(&mut self, periods: &[(i64, i64)]) -> DbResult<HashSet<(i64, i64)>> {
        let keys = meter_keys(periods.iter().map(|p| p.0))?;
        let from: Vec<Timestamp> = periods.iter().map(|p| ts(p.1)).collect();
        let to: Vec<Timestamp> = periods.iter().map(|p| ts(p.1 + INTERVAL_S)).collect();
        Ok(self
            .query(
                "SELECT u.m, u.f FROM unnest($1::int4[], $2::timestamptz[], $3::timestamptz[])
                   AS u (m, f, t)
                 WHERE EXISTS (SELECT 1 FROM reading AS r
                   WHERE r.meter = u.m AND r.time >= u.f AND r.time < u.t)",
                &[&keys, &from, &to],
            )?
            .iter()
            .map(|row| (i64::from(row.get::<_, i32>(0)), secs(row.get(1))))
            .collect())
    }

    fn agg_windows(&mut self, windows: &[(i64, i64, i64)]) -> DbResult<HashMap<i64, AggWindow>> {
        let keys = meter_keys(windows.iter().map(|w| w.0))?;
        let from: Vec<Timestamp> = windows.iter().map(|w| ts(w.1)).collect();
        let until: Vec<Timestamp> = windows.iter().map(|w| ts(w.2)).collect();
        let mut out: HashMap<i64, AggWindow> = HashMap::new();
        for row in self.query(SELECT_AGG_WINDOWS.as_str(), &[&keys, &from, &until])? {
            let window = out.entry(i64::from(row.get::<_, i32>(0))).or_default();
            let agg = agg_at(&row, 2);
            match row.get::<_, i32>(1) {
                0 => window.before = Some(agg),
                1 => window.range.push(agg),
                _ => window.after = Some(agg),
            }
        }
        Ok(out)
    }

    fn insert_rows(&mut self, rows: &[(i64, Row)]) -> DbResult<HashSet<(i64, i64)>> {
        let mut inserted = HashSet::with_capacity(rows.len());
        for chunk in rows.chunks(BATCH_CHUNK) {
            let keys = meter_keys(chunk.iter().map(|r| r.0))?;
            let times: Vec<Timestamp> = chunk.iter().map(|r| ts(r.1.ts)).collect();
            let columns: Vec<Vec<Option<i64>>> = (0..NCOL)
                .map(|c| chunk.iter().map(|r| r.1.values[c]).collect())
                .collect();
            let mut parameters: Vec<&(dyn ToSql + Sync)> = vec![&keys, &times];
            parameters.extend(columns.iter().map(|c| c as &(dyn ToSql + Sync)));
            inserted.extend(
                self.query(INSERT_ROWS_MANY.as_str(), &parameters)?
                    .iter()
                    .map(|row| (i64::from(row.get::<_, i32>(0)), secs(row.get(1)))),
            );
        }
        Ok(inserted)
    }

    fn period_rows(&mut self, periods: &[(i64, i64)]) -> DbResult<HashMap<(i64, i64), Vec<Row>>> {
        let keys = meter_keys(periods.iter().map(|p| p.0))?;
        let from: Vec<Timestamp> = periods.iter().map(|p| ts(p.1)).collect();
        let to: Vec<Timestamp> = periods.iter().map(|p| ts(p.1 + INTERVAL_S)).collect();
        let mut out: HashMap<(i64, i64), Vec<Row>> = HashMap::new();
        for row in self.query(SELECT_PERIOD_ROWS.as_str(), &[&keys, &from, &to])? {
            out.entry((i64::from(row.get::<_, i32>(0)), secs(row.get(1))))
                .or_default()
                .push(row_at(&row, 2));
        }
        Ok(out)
    }

    fn write_15m_many(&mut self, aggs: &[(i64, Agg)]) -> DbResult<()> {
        for chunk in aggs.chunks(BATCH_CHUNK) {
            let keys = meter_keys(chunk.iter().map(|a| a.0))?;
            let list: Vec<Agg> = chunk.iter().map(|a| a.1.clone()).collect();
            let arrays = agg_arrays(&list);
            let mut parameters: Vec<&(dyn ToSql + Sync)> = vec![&keys];
            parameters.extend(arrays.iter().map(|a| a.as_ref()));
            self.execute(UPSERT_15M_MANY.as_str(), &parameters)?;
        }
        Ok(())
    }

    fn rebuild_days(&mut self, days: &[(i64, Date, i64, i64)]) -> DbResult<()> {
        for chunk in days.chunks(BATCH_CHUNK) {
            let keys = meter_keys(chunk.iter().map(|d| d.0))?;
            let dates: Vec<Date> = chunk.iter().map(|d| d.1).collect();
            let starts: Vec<Timestamp> = chunk.iter().map(|d| ts(d.2)).collect();
            let ends: Vec<Timestamp> = chunk.iter().map(|d| ts(d.3)).collect();
            self.execute(REBUILD_DAYS.as_str(), &[&keys, &dates, &starts, &ends])?;
        }
        Ok(())
    }

    fn mbus_insert_many(&mut self, captures: &[(i64, u8, i64, i64)]) -> DbResult<u64> {
        let mut added = 0;
        for chunk in captures.chunks(BATCH_CHUNK) {
            let keys = meter_keys(chunk.iter().map(|c| c.0))?;
            let channels: Vec<i16> = chunk.iter().map(|c| i16::from(c.1)).collect();
            let times: Vec<Timestamp> = chunk.iter().map(|c| ts(c.2)).collect();
            let values: Vec<i64> = chunk.iter().map(|c| c.3).collect();
            added += self.execute(
                "INSERT INTO mbus_reading (meter, channel, time, value_milli)
                 SELECT * FROM unnest($1::int4[], $2::int2[], $3::timestamptz[], $4::int8[])
                 ON CONFLICT DO NOTHING",
                &[&keys, &channels, &times, &values],
            )?;
        }
        Ok(added)
    }

    fn save_fleet_counters(&mut self, counters: &[crate::fleet::FleetCounter]) -> DbResult<()> {
        crate::fleet::save_counters(self.client, counters)
    }
}

/// Rows of a set-wise statement ([`BatchDb`]) sent at a time.
const BATCH_CHUNK: usize = 10_000;

/// A meter id as the `integer` of the `meter` table.
fn meter_key(meter: i64) -> Result<i32, StoreError> {
    i32::try_from(meter).map_err(|_| StoreError::UnknownMeter(meter.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Location;
    use crate::postgres::PgClient;
    use crate::test_postgres::TestDatabase;

    /// Upserts channel 1 of meter 1 with each medium in turn, in one transaction committed or
    /// rolled back; returns whether the connection now leaves the channel out (its cache
    /// holds it).
    fn upserts(client: &mut PgClient, media: &[&str], commit: bool) -> bool {
        client
            .run_prepared(|client, statements| {
                let mut tx = client.transaction()?;
                let mut db = PgDb {
                    client: &mut tx,
                    statements: &mut *statements,
                };
                for medium in media {
                    db.mbus_channel_upsert(1, 1, medium, "m3")?;
                }
                if commit {
                    tx.commit()?;
                } // else dropped: rolled back
                Ok(statements.channels.contains_key(&(1, 1)))
            })
            .unwrap()
    }

    #[test]
    fn a_channel_is_left_out_only_once_committed_as_it_is() {
        let db = TestDatabase::create();
        let Location::Postgres(server) = db.store_config().location else {
            unreachable!("a PostgreSQL test database");
        };
        let mut client = server.connect().unwrap();
        client.run(crate::postgres::schema::migrate).unwrap();
        assert_eq!(
            db.query("INSERT INTO meter (name) VALUES ('home') RETURNING id"),
            [Some("1".to_owned())]
        );
        let stored = || db.query("SELECT medium FROM mbus_channel WHERE meter = 1 AND channel = 1");
        let gas = [Some("gas".to_owned())];
        let water = [Some("water".to_owned())];
        let upsert = |client: &mut PgClient, medium, commit| upserts(client, &[medium], commit);

        // Written by a transaction rolled back, once or twice: not there, not remembered.
        assert!(!upsert(&mut client, "gas", false));
        assert!(!upserts(&mut client, &["gas", "gas"], false));
        assert!(stored().is_empty());
        // Written by this connection's own transaction: remembered only once seen committed.
        assert!(!upsert(&mut client, "gas", true));
        assert_eq!(stored(), gas);
        assert!(upsert(&mut client, "gas", true));
        assert!(
            upsert(&mut client, "gas", false),
            "the same again: nothing sent"
        );
        assert_eq!(stored(), gas);
        // Another medium is written, and forgotten with the transaction that wrote it.
        assert!(!upsert(&mut client, "water", false));
        assert_eq!(stored(), gas);
        assert!(!upsert(&mut client, "water", true));
        assert_eq!(stored(), water);
        assert!(upsert(&mut client, "water", true));
        // Back to the medium remembered before: written again.
        assert!(!upsert(&mut client, "gas", true));
        assert_eq!(stored(), gas);
    }
}
