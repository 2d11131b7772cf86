//! Series answers: a bounded number of points, and the store turn each holds until it is sent.

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt as _;

use super::{Backend, fixture, get, options};
use crate::router;
use crate::state::QUERY_PERMITS;

async fn series_answers_hold_a_bounded_number_of_points(backend: Backend) {
    let mut f = fixture(backend, 600, None);
    f.app.max_points = 100;
    let from = crate::range::now() - 6 * 3600;
    // An explicit resolution above the bound: a clear error, before anything is read.
    let (status, body) = get(
        &f.app,
        false,
        &format!("/api/meters/home/series?field=power_import_kw&resolution=raw&from={from}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    let message = error["error"].as_str().unwrap();
    assert!(
        message.contains("100") && message.contains("coarser"),
        "{message}"
    );
    // `auto` would pick raw for 6 hours: it takes the next resolution that fits instead.
    let (status, body) = get(
        &f.app,
        false,
        &format!("/api/meters/home/series?field=power_import_kw&from={from}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let series: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(series["resolution"], "15m", "{series}");
    let points = series["t"].as_array().unwrap().len();
    assert!((6..=100).contains(&points), "{points} points");
    // Within the bound, raw is served.
    f.app.max_points = 1000;
    let (status, body) = get(
        &f.app,
        false,
        &format!("/api/meters/home/series?field=voltage_l1_v&resolution=raw&from={from}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let series: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(series["t"].as_array().unwrap().len(), 600);
    assert_eq!(series["meter"], "home");
    assert_eq!(series["value"][0], 230.1);
}

async fn a_series_answer_keeps_its_store_turn_until_it_is_sent(backend: Backend) {
    let f = fixture(backend, 600, None);
    let from = crate::range::now() - 6 * 3600;
    let response = router(f.app.clone(), options(false))
        .oneshot(
            Request::builder()
                .uri(format!(
                    "/api/meters/home/series?field=power_import_kw&resolution=raw&from={from}"
                ))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(f.app.queries.available_permits(), QUERY_PERMITS - 1);
    let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
    assert!(body.ends_with(b"]}"));
    assert_eq!(f.app.queries.available_permits(), QUERY_PERMITS);
    // A client that goes away gives the turn back too.
    let response = router(f.app.clone(), options(false))
        .oneshot(
            Request::builder()
                .uri(format!(
                    "/api/meters/home/series?field=power_import_kw&resolution=raw&from={from}"
                ))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(f.app.queries.available_permits(), QUERY_PERMITS - 1);
    drop(response);
    assert_eq!(f.app.queries.available_permits(), QUERY_PERMITS);
}

on_both!(
    series_answers_hold_a_bounded_number_of_points,
    a_series_answer_keeps_its_store_turn_until_it_is_sent,
);
