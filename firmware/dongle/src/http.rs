//! A small HTTP/1.0 server for the two faces of the dongle: on the home network the read-only
//! JSON API, in set-up mode (its own access point) the captive portal's form.
//!
//! One request per connection, bodies up to 1 KB: what a form and an API of three endpoints
//! need, in a fraction of a general server's flash.
//!
//! TODO(merge h-fw-logic): the API's JSON (`/api/v1/…`), the diagnosis and the set-up form's
//! parsing and validation come from the logic crate; the handlers here then only route.

use alloc::{format, string::String, vec::Vec};

use embassy_net::{Stack, tcp::TcpSocket};
use embassy_time::{Duration, Instant, Timer};
use embedded_io_async::Write as _;

use crate::{settings::Settings, state};

/// The largest request read (head and body).
const REQUEST_MAX: usize = 2048;

/// A parsed request.
struct Request<'a> {
    method: &'a str,
    path: &'a str,
    body: &'a [u8],
}

/// A response: status line, content type, body.
struct Response {
    status: &'static str,
    content_type: &'static str,
    body: Vec<u8>,
}

impl Response {
    fn new(status: &'static str, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            content_type,
            body: body.into(),
        }
    }
}

/// Reads a request from `socket` into `buffer`.
async fn read_request<'b>(socket: &mut TcpSocket<'_>, buffer: &'b mut [u8]) -> Option<Request<'b>> {
    let mut len = 0;
    let head_end = loop {
        let n = socket.read(&mut buffer[len..]).await.ok()?;
        if n == 0 {
            return None;
        }
        len += n;
        if let Some(at) = buffer[..len].windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if len == buffer.len() {
            return None;
        }
    };
    let head = core::str::from_utf8(&buffer[..head_end]).ok()?;
    let content_length = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let total = head_end.checked_add(content_length)?;
    if total > buffer.len() {
        return None;
    }
    while len < total {
        let n = socket.read(&mut buffer[len..total]).await.ok()?;
        if n == 0 {
            return None;
        }
        len += n;
    }
    let (head, body) = buffer[..total].split_at(head_end);
    let head = core::str::from_utf8(head).ok()?;
    let mut request_line = head.lines().next()?.split(' ');
    Some(Request {
        method: request_line.next()?,
        path: request_line.next()?,
        body,
    })
}

/// Writes `response` and closes.
async fn respond(socket: &mut TcpSocket<'_>, response: Response) {
    let head = format!(
        "HTTP/1.0 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        response.status,
        response.content_type,
        response.body.len()
    );
    let _ = socket.write_all(head.as_bytes()).await;
    let _ = socket.write_all(&response.body).await;
    let _ = socket.flush().await;
    socket.close();
}

/// Serves requests on port 80 with `handler`.
async fn serve(stack: Stack<'static>, mut handler: impl AsyncFnMut(Request<'_>) -> Response) -> ! {
    let mut rx = [0_u8; 1024];
    let mut tx = [0_u8; 2048];
    let mut buffer = [0_u8; REQUEST_MAX];
    loop {
        let mut socket = TcpSocket::new(stack, &mut rx, &mut tx);
        socket.set_timeout(Some(Duration::from_secs(10)));
        if socket.accept(80).await.is_err() {
            continue;
        }
        let response = match read_request(&mut socket, &mut buffer).await {
            Some(request) => handler(request).await,
            None => Response::new("400 Bad Request", "text/plain", "bad request\n"),
        };
        respond(&mut socket, response).await;
        // Let the FIN go out before the socket's buffers are reused.
        Timer::after(Duration::from_millis(50)).await;
        socket.abort();
    }
}

/// The read-only JSON API on the home network.
#[embassy_executor::task]
pub async fn api(stack: Stack<'static>) {
    serve(stack, async |request: Request<'_>| {
        if request.method != "GET" {
            return Response::new("405 Method Not Allowed", "text/plain", "read-only\n");
        }
        match request.path {
            "/api/v1/latest" => match state::latest() {
                Some(snapshot) => Response::new("200 OK", "application/json", snapshot.json),
                None => Response::new("503 Service Unavailable", "application/json", "{\"error\":\"no telegram yet\"}"),
            },
            "/api/v1/telegram" => match state::latest() {
                Some(snapshot) => Response::new("200 OK", "text/plain", snapshot.telegram),
                None => Response::new("503 Service Unavailable", "text/plain", "no telegram yet\n"),
            },
            "/api/v1/status" | "/" => {
                let c = state::counters();
                let now = Instant::now().as_millis();
                let age = (c.telegrams > 0).then(|| (now - c.last_ms) / 1000);
                Response::new(
                    "200 OK",
                    "application/json",
                    format!(
                        "{{\"firmware\":\"{}\",\"uptime_s\":{},\"telegrams\":{},\"rejected\":{},\"uart_errors\":{},\"last_telegram_age_s\":{}}}",
                        env!("CARGO_PKG_VERSION"),
                        now / 1000,
                        c.telegrams,
                        c.rejected,
                        c.uart_errors,
                        age.map_or(String::from("null"), |a| format!("{a}")),
                    ),
                )
            }
            _ => Response::new("404 Not Found", "text/plain", "not found\n"),
        }
    })
    .await
}

/// The set-up form.
const FORM: &str = include_str!("setup.html");

/// The captive portal in set-up mode: every GET shows the form (phones probe a few well-known
/// URLs and open whatever answers), POST /save stores the settings and restarts.
#[embassy_executor::task]
pub async fn portal(stack: Stack<'static>) {
    serve(stack, async |request: Request<'_>| {
        if request.method == "POST" && request.path == "/save" {
            return match parse_form(request.body) {
                Some(settings) => {
                    let stored = {
                        let mut flash = crate::FLASH.get().await.lock().await;
                        crate::settings::store(&mut flash, &settings).await
                    };
                    match stored {
                        Ok(()) => {
                            crate::restart_soon();
                            Response::new(
                                "200 OK",
                                "text/html",
                                "<p>Saved. The dongle restarts and joins your network.</p>",
                            )
                        }
                        Err(error) => Response::new(
                            "500 Internal Server Error",
                            "text/plain",
                            format!("could not save: {error:?}\n"),
                        ),
                    }
                }
                None => Response::new(
                    "400 Bad Request",
                    "text/html",
                    "<p>The network name is missing. <a href=/>Back</a></p>",
                ),
            };
        }
        Response::new("200 OK", "text/html", FORM)
    })
    .await
}

/// The form's fields (application/x-www-form-urlencoded); `None` without a network name.
fn parse_form(body: &[u8]) -> Option<Settings> {
    let body = core::str::from_utf8(body).ok()?;
    let mut settings = Settings {
        mqtt_port: 1883,
        ..Settings::default()
    };
    for pair in body.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = url_decode(value)?;
        match name {
            "ssid" => settings.wifi_ssid = value,
            "password" => settings.wifi_password = value,
            "key" => settings.meter_key = value.trim().into(),
            "mqtt_host" => settings.mqtt_host = value.trim().into(),
            "mqtt_port" if !value.is_empty() => settings.mqtt_port = value.trim().parse().ok()?,
            "mqtt_user" => settings.mqtt_user = value,
            "mqtt_password" => settings.mqtt_password = value,
            _ => {}
        }
    }
    (!settings.wifi_ssid.is_empty()).then_some(settings)
}

/// Percent-decoding with `+` as space; `None` for invalid escapes or UTF-8.
fn url_decode(text: &str) -> Option<String> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        out.push(match b {
            b'+' => b' ',
            b'%' => {
                let hi = char::from(bytes.next()?).to_digit(16)?;
                let lo = char::from(bytes.next()?).to_digit(16)?;
                (hi * 16 + lo) as u8
            }
            b => b,
        });
    }
    String::from_utf8(out).ok()
}
