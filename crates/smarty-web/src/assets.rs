//! The dashboard's files, embedded in the binary (no CDN: it works offline).
//!
//! The page loads `app.js` as an ES module, which imports the modules under `js/`: no build
//! step, and `script-src 'self'` allows them. Every file is revalidated on each load (its
//! `ETag` is a hash of its content, so an unchanged file costs a `304`): after an upgrade a
//! browser never mixes modules of two versions.

use std::hash::{DefaultHasher, Hash as _, Hasher as _};
use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// One embedded file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $type:literal) => {
        Asset {
            path: $path,
            content_type: $type,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/static/", $path)),
        }
    };
}

/// The content type of JavaScript, classic or module (RFC 9239).
macro_rules! js {
    ($path:literal) => {
        asset!($path, "text/javascript; charset=utf-8")
    };
}

/// Every file the dashboard needs, by URL path (without the leading `/`); the page first.
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("fleet.html", "text/html; charset=utf-8"),
    js!("app.js"),
    js!("fleet.js"),
    js!("js/api.js"),
    js!("js/charts.js"),
    js!("js/dom.js"),
    js!("js/fields.js"),
    js!("js/fleet-community.js"),
    js!("js/fleet-meters.js"),
    js!("js/format.js"),
    js!("js/guard.js"),
    js!("js/history.js"),
    js!("js/live.js"),
    js!("js/mbus.js"),
    js!("js/quarter.js"),
    js!("js/state.js"),
    js!("js/status.js"),
    js!("js/stream.js"),
    js!("js/summary.js"),
    js!("js/token.js"),
    asset!("style.css", "text/css; charset=utf-8"),
    js!("vendor/uPlot.iife.min.js"),
    asset!("vendor/uPlot.min.css", "text/css; charset=utf-8"),
];

/// The `ETag` of each asset (in [`ASSETS`] order): a hash of its content, quoted.
fn etags() -> &'static [HeaderValue] {
    static ETAGS: OnceLock<Vec<HeaderValue>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|asset| {
                let mut hasher = DefaultHasher::new();
                asset.body.hash(&mut hasher);
                HeaderValue::from_str(&format!("\"{:016x}\"", hasher.finish()))
                    .expect("hex digits are a header value")
            })
            .collect()
    })
}

/// `true` when `If-None-Match` names `etag` (or is `*`); weak tags compare by their value.
fn matches(if_none_match: Option<&HeaderValue>, etag: &HeaderValue) -> bool {
    let Some(Ok(given)) = if_none_match.map(HeaderValue::to_str) else {
        return false;
    };
    let etag = etag.to_str().unwrap_or_default();
    given
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(i) = ASSETS.iter().position(|a| a.path == path) else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    let asset = &ASSETS[i];
    let etag = etags()[i].clone();
    let common = [
        (header::ETAG, etag.clone()),
        // Cached, but revalidated on every load.
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
    ];
    if matches(headers.get(header::IF_NONE_MATCH), &etag) {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        common,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        )],
        asset.body,
    )
        .into_response()
}

/// `GET /`: the dashboard.
pub async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

/// `GET /` of `smarty fleet serve`: the fleet's page (meter list and community view).
pub async fn fleet_index(headers: HeaderMap) -> Response {
    serve("fleet.html", &headers)
}

/// `GET /{file}`.
pub async fn file(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&path, &headers)
}

/// `GET /vendor/{file}`.
pub async fn vendor(Path(file): Path<String>, headers: HeaderMap) -> Response {
    serve(&format!("vendor/{file}"), &headers)
}

/// `GET /js/{file}`: the modules `app.js` imports.
pub async fn module(Path(file): Path<String>, headers: HeaderMap) -> Response {
    serve(&format!("js/{file}"), &headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(asset: &Asset) -> &'static str {
        std::str::from_utf8(asset.body).unwrap()
    }

    #[test]
    fn every_asset_is_there_and_the_page_names_them() {
        let page = text(&ASSETS[0]);
        let fleet_page = text(&ASSETS[1]);
        // The fleet's page and its modules are named by fleet.html, the rest by index.html.
        let fleet_only = |path: &str| path.starts_with("fleet") || path.starts_with("js/fleet-");
        for asset in &ASSETS[1..] {
            assert!(!asset.body.is_empty(), "{}", asset.path);
            let (name, page) = if fleet_only(asset.path) {
                ("fleet.html", fleet_page)
            } else {
                ("index.html", page)
            };
            assert!(
                asset.path == "fleet.html" || page.contains(&format!("\"{}\"", asset.path)),
                "{name} does not load {}",
                asset.path
            );
        }
        for page in [page, fleet_page] {
            assert!(
                !page.contains("http://") && !page.contains("https://"),
                "no CDN"
            );
        }
        assert!(page.contains("<script type=\"module\" src=\"app.js\">"));
        assert!(fleet_page.contains("<script type=\"module\" src=\"fleet.js\">"));
    }

    /// The relative imports of a module (`from './js/api.js'`), as paths from `static/`.
    fn imports(asset: &Asset) -> Vec<String> {
        let dir = asset.path.rsplit_once('/').map_or("", |(dir, _)| dir);
        text(asset)
            .lines()
            .filter_map(|line| {
                let line = line.trim();
                if !line.starts_with("import ") {
                    return None;
                }
                let (_, from) = line.rsplit_once(" from ")?;
                let target = from.trim_end_matches(';').trim_matches('\'');
                let target = target.strip_prefix("./")?;
                Some(if dir.is_empty() {
                    target.to_owned()
                } else {
                    format!("{dir}/{target}")
                })
            })
            .collect()
    }

    #[test]
    fn every_module_and_import_is_embedded() {
        // Every file of static/js is served, and the page preloads it.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("static/js");
        for entry in std::fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            let path = format!("js/{name}");
            assert!(
                ASSETS.iter().any(|a| a.path == path),
                "{path} is not in ASSETS"
            );
        }
        // Every import resolves to an embedded module.
        let mut count = 0;
        for asset in ASSETS.iter().filter(|a| a.path.ends_with(".js")) {
            for target in imports(asset) {
                count += 1;
                assert!(
                    ASSETS.iter().any(|a| a.path == target),
                    "{} imports {target}, which is not embedded",
                    asset.path
                );
            }
        }
        assert!(count > 20, "only {count} imports found");
    }

    #[test]
    fn modules_are_javascript_and_revalidated() {
        let response = serve("js/state.js", &HeaderMap::new());
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-cache");
        let etag = response.headers()[header::ETAG].clone();
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, etag.clone());
        let again = serve("js/state.js", &headers);
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(again.headers()[header::ETAG], etag);
        // Another file's tag, or a list without this one: the whole file.
        let other = serve("app.js", &HeaderMap::new()).headers()[header::ETAG].clone();
        assert_ne!(other, etag);
        headers.insert(header::IF_NONE_MATCH, other);
        assert_eq!(serve("js/state.js", &headers).status(), StatusCode::OK);
        let weak = format!("\"x\", W/{}", etag.to_str().unwrap());
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_str(&weak).unwrap());
        assert_eq!(
            serve("js/state.js", &headers).status(),
            StatusCode::NOT_MODIFIED
        );
        assert_eq!(
            serve("js/nothing.js", &HeaderMap::new()).status(),
            StatusCode::NOT_FOUND
        );
    }
}
