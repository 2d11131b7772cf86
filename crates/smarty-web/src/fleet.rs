//! `smarty fleet serve`: the API over a fleet's PostgreSQL store (docs/api.md, "Fleet"),
//! routed only when the server is started with [`FleetOptions`]
//! ([`WebServer::fleet`](crate::WebServer::fleet)).
//!
//! - `GET /api/fleet`: how many meters are ok, stale and rejecting, and the senders outside
//!   the fleet whose frames were set aside;
//! - `GET /api/fleet/meters?search=&state=&limit=&offset=`: the meter list, a page at a time;
//! - `GET /api/fleet/community?day=|from=&to=&members=&top=`: the community view, per quarter
//!   hour the members' import and export summed and the shared energy
//!   `min(Σ import, Σ export)`, with totals and the top meters;
//! - `/healthz`: healthy while the database answers.
//!
//! Figures come from `smarty_store::fleet_view`, computed in SQL; keys are never read.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value as JsonValue, json};

use super::api::{answer, with_reader};
use super::error::ApiError;
use super::extract::ApiQuery;
use super::range::{now, parse_range};
use super::state::App;
use smarty_model::period::INTERVAL_S;
use smarty_model::time::{METER_ZONE, day_start, day_start_after, meter_zone};
use smarty_store::fleet_view::{
    Community, CommunityQuery, FleetMeter, MAX_PAGE, MAX_TOP, MeterListQuery, MeterState,
};

/// What the fleet's routes need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FleetOptions {
    /// A meter with nothing stored for this long is stale (seconds).
    pub stale_after_s: u64,
}

/// Nothing stored for 15 minutes (90 telegrams at the meters' 10 s): stale.
pub const DEFAULT_STALE_AFTER_S: u64 = 900;

impl Default for FleetOptions {
    fn default() -> Self {
        FleetOptions {
            stale_after_s: DEFAULT_STALE_AFTER_S,
        }
    }
}

impl FleetOptions {
    /// Meters stale after `stale_after_s` seconds without a stored reading.
    pub fn new(stale_after_s: u64) -> FleetOptions {
        FleetOptions { stale_after_s }
    }

    fn stale_after_s(self) -> i64 {
        i64::try_from(self.stale_after_s).unwrap_or(i64::MAX / 2)
    }
}

/// Senders outside the fleet listed by `/api/fleet`, the most recent first.
const UNKNOWN_SENDERS: u32 = 20;

/// Meters on a page when `limit` is not given.
const DEFAULT_PAGE: u32 = 50;

/// Local days the community view may cover at once.
const MAX_COMMUNITY_DAYS: i64 = 31;

/// How long `/healthz` waits for the database.
const HEALTH_WAIT: Duration = Duration::from_secs(5);

fn options(app: &App) -> FleetOptions {
    app.fleet.unwrap_or_default()
}

fn kwh(wh: Option<i64>) -> JsonValue {
    json!(wh.map(|wh| wh as f64 / 1000.0))
}

/// A meter of the list as the API gives it.
pub fn meter_json(m: &FleetMeter) -> JsonValue {
    let rejections: Vec<JsonValue> = m
        .rejections
        .iter()
        .map(|r| json!({ "reason": r.reason, "count": r.count, "last_at": r.last_at }))
        .collect();
    json!({
        "name": m.name,
        "system_title": m.system_title,
        "meter_id": m.meter_id,
        "last_seen": m.last_seen,
        "today_import_kwh": kwh(m.today_import_wh),
        "today_export_kwh": kwh(m.today_export_wh),
        "rejected": m.rejections.iter().map(|r| r.count).sum::<i64>(),
        "rejections": rejections,
        "state": m.state.as_str(),
    })
}

/// `GET /api/fleet`.
pub async fn summary(State(app): State<App>) -> Result<Response, ApiError> {
    let stale_after = options(&app).stale_after_s();
    let t = now();
    let (counts, (unknown, senders)) = with_reader(&app, move |r| {
        Ok((
            r.fleet_states(t, stale_after)?,
            r.fleet_unknown_senders(UNKNOWN_SENDERS)?,
        ))
    })
    .await?;
    Ok(answer(json!({
        "time_zone": METER_ZONE,
        "stale_after_s": stale_after,
        "meters": counts.meters,
        "ok": counts.ok,
        "stale": counts.stale,
        "rejecting": counts.rejecting,
        "unknown_senders": {
            "total": unknown,
            "recent": senders.iter().map(|s| json!({
                "sender": s.sender, "reason": s.reason, "count": s.count, "last_at": s.last_at,
            })).collect::<Vec<_>>(),
        },
    })))
}

/// `meters` query parameters.
#[derive(Debug, Deserialize)]
pub struct MetersQuery {
    search: Option<String>,
    state: Option<String>,
    limit: Option<u32>,
    offset: Option<u64>,
}

/// `GET /api/fleet/meters`.
pub async fn meters(
    State(app): State<App>,
    ApiQuery(q): ApiQuery<MetersQuery>,
) -> Result<Response, ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit {limit}: use 1 to {MAX_PAGE}"
        )));
    }
    let state = match q.state.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(name) => Some(MeterState::from_name(name).ok_or_else(|| {
            ApiError::bad_request(format!("state {name:?}: use ok, stale or rejecting"))
        })?),
    };
    let stale_after = options(&app).stale_after_s();
    let t = now();
    let mut query =
        MeterListQuery::new(t, day_start_after(t, 0, &meter_zone()), stale_after, limit);
    query.search = q.search.clone().filter(|s| !s.trim().is_empty());
    query.state = state;
    query.offset = q.offset.unwrap_or(0);
    let offset = query.offset;
    let page = with_reader(&app, move |r| r.fleet_meters(&query)).await?;
    Ok(answer(json!({
        "time_zone": METER_ZONE,
        "stale_after_s": stale_after,
        "total": page.total,
        "offset": offset,
        "limit": limit,
        "meters": page.meters.iter().map(meter_json).collect::<Vec<_>>(),
    })))
}

/// `community` query parameters.
#[derive(Debug, Deserialize)]
pub struct CommunityParams {
    day: Option<String>,
    from: Option<String>,
    to: Option<String>,
    members: Option<String>,
    top: Option<u32>,
}

/// The range of a community request: a local day, `from`/`to`, or today.
fn community_range(q: &CommunityParams) -> Result<(i64, i64), ApiError> {
    let zone = meter_zone();
    let (from, to) = match (&q.day, &q.from, &q.to) {
        (Some(day), None, None) => {
            let date: jiff::civil::Date = day.parse().map_err(|_| {
                ApiError::bad_request(format!("day {day:?}: a local date, YYYY-MM-DD"))
            })?;
            let start = day_start(date, &zone);
            (start, day_start_after(start, 1, &zone))
        }
        (Some(_), _, _) => {
            return Err(ApiError::bad_request(
                "give either day or from and to, not both",
            ));
        }
        (None, None, None) => {
            let today = day_start_after(now(), 0, &zone);
            (today, day_start_after(today, 1, &zone))
        }
        _ => parse_range(q.from.as_deref(), q.to.as_deref(), |to| {
            day_start_after(to - 1, 0, &zone)
        })
        .map_err(ApiError::bad_request)?,
    };
    if to - from > MAX_COMMUNITY_DAYS * 86_400 + 3600 {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_COMMUNITY_DAYS} days of the community at once"
        )));
    }
    Ok((from, to))
}

/// `GET /api/fleet/community`.
pub async fn community(
    State(app): State<App>,
    ApiQuery(q): ApiQuery<CommunityParams>,
) -> Result<Response, ApiError> {
    let (from, to) = community_range(&q)?;
    let top = q.top.unwrap_or(10);
    if top > MAX_TOP {
        return Err(ApiError::bad_request(format!(
            "top {top}: use 0 to {MAX_TOP}"
        )));
    }
    let members: Option<Vec<String>> = q.members.as_deref().map(|list| {
        list.split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect()
    });
    if members.as_ref().is_some_and(Vec::is_empty) {
        return Err(ApiError::bad_request(
            "members is empty: name meters, separated by commas, or leave it out for all",
        ));
    }
    let mut query = CommunityQuery::new(from, to);
    query.members = members;
    query.top = top;
    let community = with_reader(&app, move |r| r.community(&query)).await?;
    Ok(answer(community_json(&community, from, to)))
}

/// The community view as the API gives it (docs/api.md): columns per quarter hour, totals
/// and the top meters, energies in kWh.
pub fn community_json(c: &Community, from: i64, to: i64) -> JsonValue {
    let kwh = |wh: i64| wh as f64 / 1000.0;
    let q = &c.quarters;
    let import: i64 = q.iter().map(|q| q.import_wh).sum();
    let export: i64 = q.iter().map(|q| q.export_wh).sum();
    let shared: i64 = q.iter().map(|q| q.shared_wh()).sum();
    let ratio = |part: i64, whole: i64| (whole > 0).then(|| part as f64 / whole as f64);
    let top = |list: &[smarty_store::fleet_view::TopMeter]| -> Vec<JsonValue> {
        list.iter()
            .map(|m| json!({ "name": m.name, "energy_kwh": kwh(m.energy_wh) }))
            .collect()
    };
    json!({
        "time_zone": METER_ZONE,
        "from": from,
        "to": to,
        "interval_s": INTERVAL_S,
        "members": c.members,
        "reporting": c.reporting,
        "t": q.iter().map(|q| q.start).collect::<Vec<_>>(),
        "import_kwh": q.iter().map(|q| kwh(q.import_wh)).collect::<Vec<_>>(),
        "export_kwh": q.iter().map(|q| kwh(q.export_wh)).collect::<Vec<_>>(),
        "shared_kwh": q.iter().map(|q| kwh(q.shared_wh())).collect::<Vec<_>>(),
        "meters": q.iter().map(|q| q.meters).collect::<Vec<_>>(),
        "totals": {
            "import_kwh": kwh(import),
            "export_kwh": kwh(export),
            "shared_kwh": kwh(shared),
            "grid_import_kwh": kwh(import - shared),
            "grid_export_kwh": kwh(export - shared),
            "self_consumption_rate": ratio(shared, export),
            "self_sufficiency_rate": ratio(shared, import),
        },
        "top_import": top(&c.top_import),
        "top_export": top(&c.top_export),
    })
}

/// `GET /healthz` of `fleet serve`: 200 while the database answers, 503 with the reason
/// otherwise. Telegrams are the workers' business (their own `/healthz`).
pub async fn healthz(State(app): State<App>) -> Response {
    let check = async {
        let store = app
            .web
            .store
            .clone()
            .ok_or_else(|| "no database".to_owned())?;
        tokio::task::spawn_blocking(move || store.ping().map_err(|e| e.to_string()))
            .await
            .map_err(|e| e.to_string())?
    };
    let (status, body) = match tokio::time::timeout(HEALTH_WAIT, check).await {
        Ok(Ok(())) => (
            StatusCode::OK,
            json!({ "status": "ok", "database": { "healthy": true } }),
        ),
        Ok(Err(reason)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "status": "unhealthy", "database": { "healthy": false, "reason": reason } }),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "status": "unhealthy", "database": { "healthy": false,
                "reason": format!("no answer within {} s", HEALTH_WAIT.as_secs()) } }),
        ),
    };
    crate::health::json_response(status, &body)
}
