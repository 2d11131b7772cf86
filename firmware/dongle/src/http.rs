//! The web pages and the read-only JSON API on port 80, served by `picoserve` on both
//! stacks; the pages and the JSON are the logic crate's ([`smarty_dongle::setup_form`],
//! [`smarty_dongle::api`]).
//!
//! | path | set-up access point | home network |
//! |---|---|---|
//! | `GET /` | the set-up form | the status page |
//! | `GET /setup` | the set-up form (filled in with the stored settings, secrets never shown) | how to open the set-up access point |
//! | `POST /setup` | parse, validate, store, restart (or the form again, as typed, with the errors) | refused |
//! | `GET /status` | the status page | the status page |
//! | `GET /api/status`, `GET /api/telegram` | JSON | JSON |
//! | anything else | a redirect to the form (phones' captive-portal probes) | 404 |
//!
//! The form is served on the set-up access point only: it is protected by the access point's
//! password, and whoever can press the dongle's button can open it. The home network gets
//! read-only pages.

use alloc::{format, string::String, vec::Vec};

use embassy_net::Stack;
use picoserve::{
    io::Read,
    request::{Path, Request},
    response::{Connection, IntoResponse, Response, ResponseWriter, StatusCode},
    routing::{PathRouterService, get},
};
use smarty_dongle::{
    api,
    settings::Settings,
    setup_form::{self, FormErrors},
};

use crate::state;

/// Which network a server faces.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Face {
    /// The set-up access point: the form.
    Setup,
    /// The home network: read-only.
    Home,
}

/// A response: status, content type, body, and a `Location` for redirects.
struct Reply {
    status: StatusCode,
    content_type: &'static str,
    body: String,
    location: Option<&'static str>,
}

impl Reply {
    fn html(status: StatusCode, body: String) -> Self {
        Reply {
            status,
            content_type: "text/html; charset=utf-8",
            body,
            location: None,
        }
    }

    fn json(body: String) -> Self {
        Reply {
            status: StatusCode::OK,
            content_type: "application/json",
            body,
            location: None,
        }
    }

    fn text(status: StatusCode, body: &str) -> Self {
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
            location: None,
        }
    }

    /// To the form on the access point: what phones open when their connectivity probe is
    /// answered with a redirect.
    fn to_form() -> Self {
        Reply {
            status: StatusCode::FOUND,
            content_type: "text/plain; charset=utf-8",
            body: String::from("the set-up form: http://192.168.4.1/setup\n"),
            location: Some("http://192.168.4.1/setup"),
        }
    }
}

impl IntoResponse for Reply {
    async fn write_to<R: Read, W: ResponseWriter<Error = R::Error>>(
        self,
        connection: Connection<'_, R>,
        response_writer: W,
    ) -> Result<picoserve::ResponseSent, W::Error> {
        let response = Response::new(self.status, self.body)
            .with_content_type(self.content_type)
            .with_header("Cache-Control", "no-store");
        match self.location {
            Some(location) => {
                response
                    .with_header("Location", location)
                    .write_to(connection, response_writer)
                    .await
            }
            None => response.write_to(connection, response_writer).await,
        }
    }
}

/// Unknown paths: the form on the access point, 404 at home.
struct Fallback;

impl PathRouterService<Face> for Fallback {
    async fn call_path_router_service<R: Read, W: ResponseWriter<Error = R::Error>>(
        &self,
        face: &Face,
        (): (),
        _path: Path<'_>,
        request: Request<'_, R>,
        response_writer: W,
    ) -> Result<picoserve::ResponseSent, W::Error> {
        let reply = match face {
            Face::Setup => Reply::to_form(),
            Face::Home => Reply::text(StatusCode::NOT_FOUND, "not found\n"),
        };
        reply
            .write_to(request.body_connection.finalize().await?, response_writer)
            .await
    }
}

/// The stored settings, if any.
fn stored() -> Option<&'static Settings> {
    state::SETTINGS.try_get().and_then(Option::as_ref)
}

/// The set-up form, filled in with the stored settings (or the defaults).
fn form() -> Reply {
    let defaults = Settings::default();
    let settings = stored().unwrap_or(&defaults);
    Reply::html(
        StatusCode::OK,
        setup_form::setup_page(settings, &FormErrors::default(), stored().is_some()),
    )
}

/// `GET /setup`.
fn setup_get(face: Face) -> Reply {
    match face {
        Face::Setup => form(),
        Face::Home => Reply::html(StatusCode::FORBIDDEN, closed_form_page()),
    }
}

/// Where the form is, for a visitor from the home network.
fn closed_form_page() -> String {
    let ssid = state::ACCESS_POINT
        .try_get()
        .map_or("smarty-XXXXXX", |ap| ap.ssid.as_str());
    format!(
        "<!doctype html><meta charset=\"utf-8\"><title>smarty dongle</title>\
<p>The settings are changed on the dongle's own access point: press its button briefly, join \
<b>{}</b> with the password on the status page, and open http://192.168.4.1/setup. \
<a href=\"/\">Status</a></p>",
        setup_form::escape_html(ssid)
    )
}

/// `POST /setup`: validated settings are stored and the dongle restarts with them.
async fn setup_post(face: Face, body: Vec<u8>) -> Reply {
    if face != Face::Setup {
        return Reply::html(StatusCode::FORBIDDEN, closed_form_page());
    }
    let (settings, errors) = setup_form::parse_form_as_typed(&body, stored());
    if !errors.errors.is_empty() {
        // Again, with what was typed (secrets excepted) and the messages.
        return Reply::html(
            StatusCode::UNPROCESSABLE_ENTITY,
            setup_form::setup_page(&settings, &errors, stored().is_some()),
        );
    }
    let result = {
        let mut flash = crate::FLASH.get().await.lock().await;
        crate::settings::store(&mut flash, &settings).await
    };
    match result {
        Ok(()) => {
            log::info!("settings saved; restarting");
            crate::restart_soon();
            Reply::html(
                StatusCode::OK,
                String::from(
                    "<!doctype html><meta charset=\"utf-8\"><title>smarty dongle</title>\
<p>Saved. The dongle restarts and joins your network; this access point closes.</p>",
                ),
            )
        }
        Err(error) => {
            log::error!("settings: cannot save: {error:?}");
            Reply::text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the settings could not be written to flash\n",
            )
        }
    }
}

/// `GET /api/status`.
async fn status_json() -> Reply {
    let (stats, bytes, diagnosis) = state::p1_status().await;
    let connection = state::connection();
    let now = state::now_ms();
    let mut status = api::Status::new(now, connection.state, &stats, diagnosis);
    status.wifi_ssid = connection
        .address
        .and(stored())
        .map(|s| s.wifi_ssid.as_str());
    status.wifi_rssi_dbm = connection.rssi_dbm;
    status.broker = connection.broker;
    status.bytes_received = bytes;
    status.last_telegram_ms_ago = state::with_latest(|t| now.saturating_sub(t.received_ms));
    status.queued = connection.queued;
    status.dropped = connection.dropped;
    Reply::json(api::status_json(&status))
}

/// `GET /api/telegram`.
fn telegram_json() -> Reply {
    Reply::json(api::telegram_json(
        state::latest().as_ref(),
        state::now_ms(),
    ))
}

/// The status page: the diagnosis, the connection, the set-up access point.
async fn status_page() -> Reply {
    let (stats, bytes, diagnosis) = state::p1_status().await;
    let connection = state::connection();
    let now = state::now_ms();
    let settings = stored();
    let ap = state::ACCESS_POINT.try_get();
    let uptime = format!("{} s", now / 1000);
    let network = match (settings, connection.address) {
        (Some(s), Some(address)) => format!(
            "{} ({address}{})",
            s.wifi_ssid,
            connection
                .rssi_dbm
                .map(|r| format!(", {r} dBm"))
                .unwrap_or_default()
        ),
        (Some(s), None) => format!("{} (not joined)", s.wifi_ssid),
        (None, _) => String::from("not set up"),
    };
    let broker = match settings {
        Some(s) => format!(
            "{}:{} — {}{}",
            s.mqtt.host,
            s.mqtt.port,
            connection.broker.as_str(),
            connection
                .broker_error
                .as_ref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        ),
        None => String::from("not set up"),
    };
    let telegrams = format!(
        "{} of {} frames, {} bytes",
        stats.telegrams, stats.frames, bytes
    );
    let last = state::with_latest(|t| t.received_ms).map_or(String::from("none yet"), |at| {
        format!("{} s ago", now.saturating_sub(at) / 1000)
    });
    let queue = format!(
        "{} queued, {} dropped",
        connection.queued, connection.dropped
    );
    let rows = [
        ("Firmware", smarty_dongle::VERSION),
        ("Up", uptime.as_str()),
        ("State", connection.state.as_str()),
        ("Wi-Fi", network.as_str()),
        ("MQTT broker", broker.as_str()),
        ("Telegrams", telegrams.as_str()),
        ("Last telegram", last.as_str()),
        ("MQTT queue", queue.as_str()),
        ("Set-up access point", ap.map_or("", |ap| ap.ssid.as_str())),
        ("Its password", ap.map_or("", |ap| ap.password.as_str())),
    ];
    Reply::html(StatusCode::OK, setup_form::status_page(&diagnosis, &rows))
}

/// The server's configuration: one request per connection (one server per stack).
static CONFIG: picoserve::Config = picoserve::Config::const_default();

/// Serves the pages and the API on port 80 of `stack`, facing `face`.
#[embassy_executor::task(pool_size = 2)]
pub async fn server(stack: Stack<'static>, face: Face) {
    let app = picoserve::Router::from_service(Fallback)
        .route(
            "/",
            get(
                async |picoserve::extract::State(face): picoserve::extract::State<Face>| match face
                {
                    Face::Setup => form(),
                    Face::Home => status_page().await,
                },
            ),
        )
        .route(
            "/setup",
            get(
                async |picoserve::extract::State(face): picoserve::extract::State<Face>| {
                    setup_get(face)
                },
            )
            .post(
                async |picoserve::extract::State(face): picoserve::extract::State<Face>,
                       body: Vec<u8>| { setup_post(face, body).await },
            ),
        )
        .route("/status", get(async || status_page().await))
        .route("/api/status", get(async || status_json().await))
        .route("/api/telegram", get(async || telegram_json()))
        .with_state(face);
    // The request head (and the start of a body) must fit `buffer`; the socket's buffers only
    // pass bytes through, and a form's body is read into the heap.
    let mut rx = [0_u8; 512];
    let mut tx = [0_u8; 1024];
    let mut buffer = [0_u8; 2048];
    let reason = picoserve::Server::new(&app, &CONFIG, &mut buffer)
        .listen_and_serve(face_name(face), stack, 80, &mut rx, &mut tx)
        .await;
    reason.into_never()
}

fn face_name(face: Face) -> &'static str {
    match face {
        Face::Setup => "http (set-up)",
        Face::Home => "http (home)",
    }
}
