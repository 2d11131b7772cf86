//! The JSON API under `/api/` (docs/api.md; `/api/openapi.json` describes it).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value as JsonValue, json};
use tokio::sync::OwnedSemaphorePermit;

use super::body::series_body;
use super::error::ApiError;
use super::extract::{ApiPath, ApiQuery};
use super::fields::fields;
use super::live::{guard_json, status_json, telegram_json};
use super::number::round_answer;
use super::range::{now, parse_range};
use super::state::App;
use smarty_model::period::{INTERVAL_S, Interval, Period, Resolution};
use smarty_model::time::{METER_ZONE, day_start_after, meter_zone, month_start_after};
use smarty_store::{ReadConnection, Store, StoreError, StoredMeter};
use smarty_tariff as tariff;

type ApiResult = Result<Response, ApiError>;

/// How long a request waits for its turn at the store before it is answered 503.
const QUERY_WAIT: Duration = Duration::from_secs(30);

/// Local days a `totals` or `tariff` request may cover (ten years).
const MAX_REPORT_DAYS: i64 = 3660;

/// Runs `query` on a read connection of the store, off the async threads, when one of the
/// [`QUERY_PERMITS`](super::state::QUERY_PERMITS) turns is free; gives the turn back with
/// the result, to be held while the answer is sent.
async fn with_reader_turn<T: Send + 'static>(
    app: &App,
    query: impl FnOnce(&ReadConnection) -> Result<T, ApiError> + Send + 'static,
) -> Result<(T, OwnedSemaphorePermit), ApiError> {
    let store: Store = app.web.store.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the history store is off ([store] enabled = false, or no state directory)",
        )
    })?;
    let permit = tokio::time::timeout(QUERY_WAIT, Arc::clone(&app.queries).acquire_owned())
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "busy: every store query slot was taken for {} s; try again later",
                    QUERY_WAIT.as_secs()
                ),
            )
        })?
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    // The turn goes with the query: when the client leaves early, the query still holds it
    // until it ends.
    let (result, permit) = tokio::task::spawn_blocking(move || {
        let result = store
            .reader()
            .map_err(ApiError::from)
            .and_then(|reader| query(&reader));
        (result, permit)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok((result?, permit))
}

/// [`with_reader_turn`] for answers that are small: the turn ends with the query.
pub(crate) async fn with_reader<T: Send + 'static>(
    app: &App,
    query: impl FnOnce(&ReadConnection) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    with_reader_turn(app, move |r| query(r).map_err(ApiError::from))
        .await
        .map(|(result, _)| result)
}

/// A JSON answer with its numbers rounded to their resolutions ([`round_answer`]).
pub fn answer(mut body: JsonValue) -> Response {
    round_answer(&mut body);
    Json(body).into_response()
}

/// `meters` query parameters.
#[derive(Debug, Deserialize)]
pub struct MetersQuery {
    name: Option<String>,
}

/// `GET /api/meters` (`?name=NAME`: only that meter, 404 when unknown; on a fleet, no meter
/// without `name`).
pub async fn meters(State(app): State<App>, ApiQuery(q): ApiQuery<MetersQuery>) -> ApiResult {
    let wanted = q.name.clone();
    // A fleet may hold a million meters: its list is /api/fleet/meters, a page at a time.
    if app.fleet.is_some() && wanted.is_none() {
        return Ok(answer(
            json!({ "time_zone": METER_ZONE, "meters": [], "fleet": true }),
        ));
    }
    let stored: Vec<StoredMeter> = if app.web.store.is_some() {
        let wanted = wanted.clone();
        with_reader(&app, move |r| match wanted {
            Some(name) => Ok(r.meter(&name)?.into_iter().collect()),
            None => r.meters(),
        })
        .await?
    } else {
        Vec::new()
    };
    let live = &app.web.live;
    let mut names: Vec<String> = live
        .meter_names()
        .iter()
        .map(|n| n.to_string())
        .filter(|n| wanted.as_ref().is_none_or(|w| w == n))
        .collect();
    for meter in &stored {
        if !names.contains(&meter.name) {
            names.push(meter.name.clone());
        }
    }
    if let Some(name) = &wanted
        && names.is_empty()
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no meter named {name:?}"),
        ));
    }
    // A fleet's meters: what the workers stored and set aside, instead of live counters.
    let fleet_entries = match (app.fleet, &wanted) {
        (Some(options), Some(name)) => {
            let name = name.clone();
            let t = now();
            let today = day_start_after(t, 0, &meter_zone());
            let stale = i64::try_from(options.stale_after_s).unwrap_or(i64::MAX / 2);
            with_reader(&app, move |r| r.fleet_meter(&name, t, today, stale))
                .await?
                .into_iter()
                .collect()
        }
        _ => Vec::new(),
    };
    let list: Vec<JsonValue> = names
        .iter()
        .map(|name| {
            let status = live.status(name);
            let latest = live.latest(name);
            let mut entry = status_json(name, status.as_deref(), latest.as_deref());
            entry["guard"] = live.guard(name).map_or(JsonValue::Null, |g| guard_json(&g));
            let stored = stored.iter().find(|m| &m.name == name);
            if entry["meter_id"].is_null()
                && let Some(id) = stored.and_then(|m| m.meter_id.clone())
            {
                entry["meter_id"] = json!(id);
            }
            entry["first_reading"] = json!(stored.and_then(|m| m.first_reading));
            entry["last_reading"] = json!(stored.and_then(|m| m.last_reading));
            let mbus = stored.map(|m| m.mbus.as_slice()).unwrap_or_default();
            entry["mbus"] = json!(mbus);
            let values = latest.as_deref().map(|t| t.values.as_slice());
            entry["fields"] = json!(fields(values, app.web.store.is_some(), mbus));
            if app.fleet.is_some() {
                entry["source"] = json!("fleet");
                if let Some(m) = fleet_entries.iter().find(|m| &m.name == name) {
                    entry["last_telegram"] = json!(m.last_seen);
                    entry["rejections"] = m
                        .rejections
                        .iter()
                        .map(|r| (r.reason.clone(), json!(r.count)))
                        .collect::<serde_json::Map<_, _>>()
                        .into();
                    entry["fleet"] = super::fleet::meter_json(m);
                }
            }
            entry
        })
        .collect();
    let mut body = json!({ "time_zone": METER_ZONE, "meters": list });
    if app.fleet.is_some() {
        body["fleet"] = json!(true);
    }
    Ok(answer(body))
}

/// The meter must be known (configured, seen or stored).
async fn known_meter(app: &App, meter: &str) -> Result<(), ApiError> {
    if app.web.live.meter_names().iter().any(|n| &**n == meter) {
        return Ok(());
    }
    if app.web.store.is_some() {
        let name = meter.to_owned();
        if with_reader(app, move |r| r.meter(&name)).await?.is_some() {
            return Ok(());
        }
    }
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no meter named {meter:?}"),
    ))
}

/// `GET /api/meters/{meter}/latest`.
pub async fn latest(State(app): State<App>, ApiPath(meter): ApiPath<String>) -> ApiResult {
    known_meter(&app, &meter).await?;
    if let Some(event) = app.web.live.latest(&meter) {
        let mut body = telegram_json(&event, true);
        let guard = app.web.live.guard(&meter);
        body["guard"] = guard.map_or(JsonValue::Null, |g| guard_json(&g));
        return Ok(answer(body));
    }
    // A fleet has no live telegrams: its meters' last stored readings stand in.
    if app.fleet.is_some() {
        let name = meter.clone();
        if let Some((time, values)) = with_reader(&app, move |r| r.last_reading(&name)).await? {
            let values: serde_json::Map<String, JsonValue> = values
                .into_iter()
                .map(|(name, value)| (name.to_owned(), json!(value)))
                .collect();
            return Ok(answer(json!({
                "meter": meter,
                "received": time,
                "timestamp": smarty_model::time::local_rfc3339(time, &meter_zone()),
                "values": values,
                "guard": null,
                "stored": true,
            })));
        }
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("meter {meter:?} has no stored reading"),
        ));
    }
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        format!("meter {meter:?} has sent no telegram since the start"),
    ))
}

/// `from`/`to` query parameters.
#[derive(Debug, Deserialize)]
pub struct RangeQuery {
    from: Option<String>,
    to: Option<String>,
}

/// `series` query parameters.
#[derive(Debug, Deserialize)]
pub struct SeriesQuery {
    field: Option<String>,
    from: Option<String>,
    to: Option<String>,
    resolution: Option<String>,
}

/// The resolution `auto` picks for a span of `seconds`.
pub fn auto_resolution(seconds: i64) -> Resolution {
    const HOUR: i64 = 3600;
    const DAY: i64 = 24 * HOUR;
    if seconds <= 12 * HOUR {
        Resolution::Raw
    } else if seconds <= 14 * DAY {
        Resolution::Min15
    } else if seconds <= 120 * DAY {
        Resolution::Hour
    } else {
        Resolution::Day
    }
}

fn parse_resolution(text: Option<&str>, span: i64) -> Result<Resolution, ApiError> {
    match text.unwrap_or("auto") {
        "auto" => Ok(auto_resolution(span)),
        other => Resolution::from_name(other).ok_or_else(|| {
            ApiError::bad_request(format!(
                "resolution {other:?}: use auto, raw, 15m, hour, day or month"
            ))
        }),
    }
}

/// `GET /api/meters/{meter}/series`.
pub async fn series(
    State(app): State<App>,
    ApiPath(meter): ApiPath<String>,
    ApiQuery(q): ApiQuery<SeriesQuery>,
) -> ApiResult {
    let field = q
        .field
        .clone()
        .ok_or_else(|| ApiError::bad_request("field is missing, e.g. field=power_import_kw"))?;
    let (from, to) = parse_range(q.from.as_deref(), q.to.as_deref(), |to| to - 86_400)
        .map_err(ApiError::bad_request)?;
    let automatic = matches!(q.resolution.as_deref(), None | Some("auto"));
    let mut resolution = parse_resolution(q.resolution.as_deref(), to - from)?;
    known_meter(&app, &meter).await?;
    let name = meter.clone();
    let max_points = app.max_points;
    let (series, permit) = with_reader_turn(&app, move |r| {
        // Count before reading: no answer may hold more than `max_points` points.
        loop {
            let points = r.series_points_bound(&name, &field, from, to, resolution)?;
            if points <= max_points {
                break;
            }
            match resolution.coarser() {
                Some(next) if automatic => resolution = next,
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "this answer would hold up to {points} points, more than the \
                         {max_points} one answer may hold: ask for a coarser resolution \
                         (raw, 15m, hour, day, month) or a shorter range"
                    )));
                }
            }
        }
        Ok(r.series(&name, &field, from, to, resolution)?)
    })
    .await?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        )],
        series_body(series, &meter, from, to, Some(permit)),
    )
        .into_response())
}

/// `totals` and `tariff` query parameters.
#[derive(Debug, Deserialize)]
pub struct PeriodQuery {
    period: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

fn parse_period(q: &PeriodQuery) -> Result<(Period, i64, i64), ApiError> {
    let period = match q.period.as_deref().unwrap_or("day") {
        "day" => Period::Day,
        "month" => Period::Month,
        other => {
            return Err(ApiError::bad_request(format!(
                "period {other:?}: use day or month"
            )));
        }
    };
    let (from, to) = parse_range(q.from.as_deref(), q.to.as_deref(), |to| match period {
        Period::Day => day_start_after(to, -30, &meter_zone()),
        Period::Month => month_start_after(to, -11, &meter_zone()),
    })
    .map_err(ApiError::bad_request)?;
    if to - from > MAX_REPORT_DAYS * 86_400 {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_REPORT_DAYS} days (ten years) at once"
        )));
    }
    Ok((period, from, to))
}

/// `GET /api/meters/{meter}/tariff`.
pub async fn tariff_report(
    State(app): State<App>,
    ApiPath(meter): ApiPath<String>,
    ApiQuery(q): ApiQuery<PeriodQuery>,
) -> ApiResult {
    let (period, from, to) = parse_period(&q)?;
    known_meter(&app, &meter).await?;
    let config = app.web.tariff.clone();
    let name = meter.clone();
    let report = with_reader(&app, move |r| {
        let intervals = r.intervals(&name, from, to)?;
        Ok(tariff::report(&intervals, &config, period))
    })
    .await?;
    let mut body = serde_json::to_value(&report)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    body["meter"] = json!(meter);
    Ok(answer(body))
}

/// `GET /api/meters/{meter}/totals`.
pub async fn totals(
    State(app): State<App>,
    ApiPath(meter): ApiPath<String>,
    ApiQuery(q): ApiQuery<PeriodQuery>,
) -> ApiResult {
    let (period, from, to) = parse_period(&q)?;
    known_meter(&app, &meter).await?;
    let config = app.web.tariff.clone();
    let name = meter.clone();
    let (report, mbus) = with_reader(&app, move |r| {
        let intervals = r.intervals(&name, from, to)?;
        let mbus = r.mbus_totals(&name, from, to, period)?;
        Ok((tariff::report(&intervals, &config, period), mbus))
    })
    .await?;
    let mut rows: BTreeMap<String, JsonValue> = BTreeMap::new();
    for row in &report.rows {
        rows.insert(
            row.period.clone(),
            json!({
                "period": row.period,
                "start": row.start,
                "energy_import_kwh": row.figures.energy_import_kwh,
                "energy_export_kwh": row.figures.energy_export_kwh,
                "power_import_max_kw": row.figures.peak_15min_kw,
                "energy_above_reference_kwh": row.figures.energy_above_reference_kwh,
                "cost_eur": row.figures.cost.bill_eur,
                "export_remuneration_eur": -row.figures.cost.export_eur,
                "mbus": {},
            }),
        );
    }
    for m in mbus {
        let row = rows.entry(m.period.clone()).or_insert_with(|| {
            json!({
                "period": m.period, "start": m.start,
                "energy_import_kwh": null, "energy_export_kwh": null,
                "power_import_max_kw": null, "energy_above_reference_kwh": null,
                "cost_eur": null, "export_remuneration_eur": null, "mbus": {},
            })
        });
        row["mbus"][&m.name] = json!(m.value);
    }
    let mut rows: Vec<JsonValue> = rows.into_values().collect();
    rows.sort_by_key(|r| r["start"].as_i64());
    Ok(answer(json!({
        "meter": meter,
        "period": period,
        "currency": report.currency,
        "rows": rows,
    })))
}

/// `GET /api/meters/{meter}/intervals`.
pub async fn intervals(
    State(app): State<App>,
    ApiPath(meter): ApiPath<String>,
    ApiQuery(q): ApiQuery<RangeQuery>,
) -> ApiResult {
    let (from, to) = match (&q.from, &q.to) {
        (None, None) => {
            let today = day_start_after(now(), 0, &meter_zone());
            (today, day_start_after(today, 1, &meter_zone()))
        }
        _ => parse_range(q.from.as_deref(), q.to.as_deref(), |to| {
            day_start_after(to - 1, 0, &meter_zone())
        })
        .map_err(ApiError::bad_request)?,
    };
    if to - from > 62 * 86_400 {
        return Err(ApiError::bad_request(
            "at most 62 days of 15-minute periods at once",
        ));
    }
    known_meter(&app, &meter).await?;
    let name = meter.clone();
    let list = with_reader(&app, move |r| r.intervals(&name, from, to)).await?;
    let reference = app.web.tariff.reference_power_kw;
    Ok(answer(json!({
        "meter": meter,
        "reference_power_kw": reference,
        "interval_s": INTERVAL_S,
        "from": from,
        "to": to,
        "t": list.iter().map(|i| i.start).collect::<Vec<_>>(),
        "power_import_kw": list.iter().map(Interval::power_import_kw).collect::<Vec<_>>(),
        "energy_import_kwh": list.iter().map(|i| i.energy_import_wh as f64 / 1000.0).collect::<Vec<_>>(),
        "energy_above_reference_kwh": list
            .iter()
            .map(|i| tariff::above_reference_kwh(i, reference))
            .collect::<Vec<_>>(),
    })))
}

/// `GET /api/meters/{meter}/summary`.
pub async fn summary(State(app): State<App>, ApiPath(meter): ApiPath<String>) -> ApiResult {
    known_meter(&app, &meter).await?;
    let config = app.web.tariff.clone();
    let name = meter.clone();
    let t = now();
    let today = day_start_after(t, 0, &meter_zone());
    let month = month_start_after(t, 0, &meter_zone());
    let last_month = month_start_after(t, -1, &meter_zone());
    let body = with_reader(&app, move |r| {
        let list = r.intervals(&name, last_month, t + 1)?;
        Ok(json!({
            "today": tariff::summarize(&list, &config, today, t + 1),
            "month": tariff::summarize(&list, &config, month, t + 1),
            "last_month": tariff::summarize(&list, &config, last_month, month),
        }))
    })
    .await?;
    let mut out = json!({
        "meter": meter,
        "currency": app.web.tariff.currency,
        "reference_power_kw": app.web.tariff.reference_power_kw,
    });
    for key in ["today", "month", "last_month"] {
        out[key] = body[key].clone();
    }
    Ok(answer(out))
}

/// `GET /api/openapi.json`.
pub async fn openapi() -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        )],
        super::OPENAPI,
    )
        .into_response()
}

/// Unknown paths under `/api/`.
pub async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such endpoint: see /api/openapi.json",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_resolution_by_span() {
        assert_eq!(auto_resolution(6 * 3600), Resolution::Raw);
        assert_eq!(auto_resolution(86_400), Resolution::Min15);
        assert_eq!(auto_resolution(30 * 86_400), Resolution::Hour);
        assert_eq!(auto_resolution(365 * 86_400), Resolution::Day);
    }
}
