//! The access token: in the `Authorization` header or percent-encoded in the query, for the
//! API, the live stream and (unless made public) the metrics; the health check and the page
//! stay open.

use axum::http::StatusCode;

use super::{Backend, TOKEN, encoded, first_telegram_event, fixture, get, household};

async fn a_base64_token_works_in_the_header_and_percent_encoded_in_the_query(backend: Backend) {
    let f = fixture(backend, 10, Some(TOKEN));
    assert_eq!(
        get(&f.app, false, "/api/meters", Some(TOKEN)).await.0,
        StatusCode::OK
    );
    // As the dashboard's EventSource sends it (URLSearchParams): `+` `/` `=` percent-encoded.
    let query = encoded(TOKEN);
    assert!(query.contains("%2B") && query.contains("%2F") && query.contains("%3D"));
    let (status, body) = get(&f.app, false, &format!("/api/meters?token={query}"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        get(
            &f.app,
            false,
            &format!("/api/meters/home/summary?x=1&token={query}"),
            None
        )
        .await
        .0,
        StatusCode::OK
    );
    // Wrong or missing tokens are refused, without showing the right one.
    for uri in [
        "/api/meters".to_owned(),
        "/api/meters?token=q%2B8%2FZmFrZS10b2tlbg%3D".to_owned(),
        format!("/api/meters?token={TOKEN}"),
    ] {
        let (status, body) = get(&f.app, false, &uri, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
        assert!(!body.contains("ZmFrZS10b2tlbg"), "{body}");
    }
}

async fn metrics_need_the_token_unless_made_public(backend: Backend) {
    let f = fixture(backend, 10, Some(TOKEN));
    let (status, body) = get(&f.app, false, "/metrics", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(!body.contains("smarty_"), "{body}");
    assert_eq!(
        get(&f.app, false, "/metrics", Some("wrong-token-000000"))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let (status, body) = get(&f.app, false, "/metrics", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("smarty_metrics_events_lagged_total"),
        "{body}"
    );
    let query = encoded(TOKEN);
    assert_eq!(
        get(&f.app, false, &format!("/metrics?token={query}"), None)
            .await
            .0,
        StatusCode::OK
    );
    // The explicit opt-out for scrapers without a token.
    assert_eq!(get(&f.app, true, "/metrics", None).await.0, StatusCode::OK);
    // The health check stays open: it tells whether meters deliver, not what they measure.
    assert_ne!(
        get(&f.app, false, "/healthz", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    // Without a token (loopback), everything is open.
    let open = fixture(backend, 1, None);
    assert_eq!(
        get(&open.app, false, "/metrics", None).await.0,
        StatusCode::OK
    );
}

/// With a token, a live meter: the API's error names the token; the live stream the
/// dashboard opens with the token in its query, and the metrics of the meter with it in the
/// header; health and the page itself stay open, and the token is never shown.
async fn the_stream_and_the_metrics_of_a_live_meter_take_the_token(backend: Backend) {
    let f = fixture(backend, 10, Some(TOKEN));
    let telegram = household::telegram_now();
    household::make_live(&f.app.web.live, "home", &telegram);
    let (status, body) = get(&f.app, false, "/api/meters", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let message: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        message["error"].as_str().unwrap().contains("token"),
        "{body}"
    );
    let (status, _) = get(&f.app, false, "/api/meters", Some("wrong-token-0000000")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = get(&f.app, false, "/api/meters", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("\"home\""), "{body}");

    let query = encoded(TOKEN);
    let event = first_telegram_event(
        &f,
        &format!("/api/stream?meter=home&token={query}"),
        None,
        household::telegram_event("home", &telegram),
    )
    .await;
    assert_eq!(event["meter"], "home");
    let (status, _) = get(&f.app, false, "/api/stream?meter=home", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, metrics) = get(&f.app, false, "/metrics", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{metrics}");
    assert!(!metrics.contains("smarty_"), "{metrics}");
    let (status, metrics) = get(&f.app, false, "/metrics", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        metrics.contains("smarty_telegrams_total{meter=\"home\"}"),
        "{metrics}"
    );

    assert_eq!(get(&f.app, false, "/healthz", None).await.0, StatusCode::OK);
    let (status, page) = get(&f.app, false, "/", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!page.contains(TOKEN) && !page.contains(&query));
}

on_both!(
    a_base64_token_works_in_the_header_and_percent_encoded_in_the_query,
    metrics_need_the_token_unless_made_public,
    the_stream_and_the_metrics_of_a_live_meter_take_the_token,
);
