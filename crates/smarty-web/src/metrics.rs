//! `/metrics`: the live state ([`LiveState`]) in the Prometheus exposition formats.
//!
//! On each scrape a prometheus-client [`Collector`] turns the latest telegram and status of
//! every meter into samples, so every value is the meter's (or the decoder's) own absolute
//! total: counters are emitted as counter-type samples of the latest totals (`ConstCounter`)
//! and never go backwards while the meter's register does not (a replaced meter or a
//! restarted gateway looks like a counter reset, which Prometheus handles).
//!
//! Names (all with a `meter` label, the configured meter name):
//! - Meter values: `smarty_<standard name>` — the names of `smarty read` and the MQTT topics,
//!   units included (`energy_import_kwh`, `voltage_l1_v`). Energy, reactive energy, event
//!   counts and M-Bus readings are counters (`smarty_energy_import_kwh_total`,
//!   `smarty_power_failures_total`); power, voltage, current, power factor, frequency,
//!   thresholds and states are gauges (`smarty_power_import_kw`, `smarty_voltage_l1_v`).
//!   Phases stay in the name (`smarty_power_import_l1_kw`) rather than in a label, because
//!   the totals (`smarty_power_import_kw`) would otherwise share a family with their phases and
//!   `sum()` would count them twice. The values of an M-Bus device drop their channel for a
//!   `channel` label: `smarty_mbus_gas_m3_total{meter="home",channel="1"}`.
//! - `smarty_meter_info{meter,meter_id}` 1.
//! - The gateway: `smarty_frames_total` (encrypted frames found), `smarty_plain_telegrams_total`,
//!   `smarty_telegrams_total` (accepted), `smarty_rejections_total{reason}` (every reason of
//!   `RejectReason::ALL`, zeros included), `smarty_noise_bytes_total`, `smarty_reconnects_total`,
//!   `smarty_connected` (0/1), `smarty_last_telegram_timestamp_seconds` (Unix time), and without
//!   a meter label `smarty_mqtt_queue_depth` (reported by the MQTT output through
//!   [`LiveState::mqtt_queue`]) and `smarty_metrics_events_lagged_total`.
//! - The live reference-power guard, for meters with a guard state (gauges, the quarter hour
//!   in progress): `smarty_guard_energy_import_kwh`, `smarty_guard_average_power_kw`,
//!   `smarty_guard_projected_average_kw`, `smarty_guard_headroom_kw`,
//!   `smarty_guard_reference_power_kw`, `smarty_guard_will_exceed` and `smarty_guard_exceeded`
//!   (0/1), `smarty_guard_month_peak_kw`.
//!
//! Format: OpenMetrics 1.0 text (prometheus-client's encoder) when the scraper asks for it in
//! `Accept` (Prometheus does), otherwise the Prometheus text format 0.0.4 (curl, promtool,
//! older scrapers), derived from the same encoding: counter families are declared under their
//! sample name (`smarty_energy_import_kwh_total`) and `# EOF` is left out.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use smarty_p1::RejectReason;
use smarty_p1::registry::Kind;

use smarty_model::guard::{GuardState, Verdict};
use smarty_model::live::LiveState;
use smarty_model::slug::slug;

use super::live::will_exceed;

/// Content type of the OpenMetrics text format.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of the Prometheus text format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The exposition in the OpenMetrics text format.
pub fn openmetrics(live: &Arc<LiveState>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Exposition(Arc::clone(live))));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)
        .expect("writing to a String cannot fail");
    out
}

/// The exposition in the Prometheus text format 0.0.4 (see the module docs).
pub fn prometheus_text(live: &Arc<LiveState>) -> String {
    let counters: BTreeSet<String> = families(live)
        .into_values()
        .filter(|f| f.counter)
        .map(|f| f.name)
        .collect();
    let mut out = String::new();
    for line in openmetrics(live).lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|tag| {
            let rest = line.strip_prefix(tag)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{tag}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// Every metric family, by name.
fn families(live: &LiveState) -> BTreeMap<String, Family> {
    let mut families = Families::default();
    for (meter, entry) in live.snapshot() {
        let m: Labels = vec![("meter", meter.to_string())];
        if let Some(t) = &entry.telegram {
            if let Some(id) = &t.meter_id {
                let labels = vec![("meter", meter.to_string()), ("meter_id", id.clone())];
                families.gauge("smarty_meter_info", "The meter's id.", labels, 1.0);
            }
            for value in &t.values {
                let Some(v) = value.data.number() else {
                    continue;
                };
                let counter = match value.id.kind() {
                    _ if value.id.is_cumulative() => true,
                    Kind::Power
                    | Kind::ReactivePower
                    | Kind::ApparentPower
                    | Kind::Voltage
                    | Kind::Current
                    | Kind::PowerFactor
                    | Kind::Frequency
                    | Kind::Threshold
                    | Kind::State
                    | Kind::Tariff
                    | Kind::MbusDeviceType => false,
                    _ => continue,
                };
                let mut labels = m.clone();
                // The values of an M-Bus device: the channel is a label, `n` in the code.
                let (name, obis) =
                    match (value.id.device_channel(), value.id.name_without_channel()) {
                        (Some(channel), Some(name)) => {
                            labels.push(("channel", channel.to_string()));
                            let o = value.id.obis();
                            (name, format!("{}-n:{}.{}.{}", o.a, o.c, o.d, o.e))
                        }
                        _ => (value.name.clone(), value.code.clone()),
                    };
                let name = format!("smarty_{}", slug(&name));
                let help = format!("Meter value {} (OBIS {obis}).", value.name);
                if counter {
                    families.counter(&name, &help, labels, v);
                } else {
                    families.gauge(&name, &help, labels, v);
                }
            }
        }
        if let Some(s) = &entry.status {
            let stats = &s.stats;
            families.counter(
                "smarty_frames",
                "Encrypted frames found.",
                m.clone(),
                stats.frames as f64,
            );
            families.counter(
                "smarty_plain_telegrams",
                "Plaintext telegrams found.",
                m.clone(),
                stats.plain_telegrams as f64,
            );
            families.counter(
                "smarty_telegrams",
                "Telegrams accepted.",
                m.clone(),
                stats.telegrams as f64,
            );
            for reason in RejectReason::ALL {
                let mut labels = m.clone();
                labels.push(("reason", reason.as_str().to_owned()));
                families.counter(
                    "smarty_rejections",
                    "Frames and telegrams rejected, by reason.",
                    labels,
                    stats.rejected(reason) as f64,
                );
            }
            families.counter(
                "smarty_noise_bytes",
                "Bytes outside any frame or telegram.",
                m.clone(),
                stats.noise_bytes as f64,
            );
            families.counter(
                "smarty_reconnects",
                "How often the source was reopened.",
                m.clone(),
                s.reconnects as f64,
            );
            families.gauge(
                "smarty_connected",
                "1 while the source is open.",
                m.clone(),
                if s.connected { 1.0 } else { 0.0 },
            );
        }
        if let Some(t) = entry.last_telegram() {
            let secs = t
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64();
            families.gauge(
                "smarty_last_telegram_timestamp_seconds",
                "When the last telegram was accepted (Unix time).",
                m.clone(),
                secs,
            );
        }
        if let Some(g) = &entry.guard {
            guard_families(&mut families, &m, &g.state);
        }
    }
    families.gauge(
        "smarty_mqtt_queue_depth",
        "Messages waiting in the MQTT output's queue.",
        Vec::new(),
        live.mqtt_queue().depth() as f64,
    );
    families.counter(
        "smarty_metrics_events_lagged",
        "Events the metrics missed because they fell behind.",
        Vec::new(),
        live.missed_total() as f64,
    );
    families.0
}

/// The gauges of a meter's live guard (`smarty_guard_*`); a figure that is not finite is left
/// out.
fn guard_families(families: &mut Families, m: &Labels, s: &GuardState) {
    let mut gauge = |name: &str, help: &str, value: Option<f64>| {
        if let Some(v) = value.filter(|v| v.is_finite()) {
            families.gauge(name, help, m.clone(), v);
        }
    };
    gauge(
        "smarty_guard_energy_import_kwh",
        "Energy imported in the quarter hour in progress so far, kWh.",
        Some(s.energy_import_wh as f64 / 1000.0),
    );
    gauge(
        "smarty_guard_average_power_kw",
        "Average import power since the quarter hour began, kW.",
        Some(s.average_power_kw),
    );
    gauge(
        "smarty_guard_projected_average_kw",
        "The quarter hour's average at its end if the present power holds, kW.",
        Some(s.projected_average_kw),
    );
    gauge(
        "smarty_guard_headroom_kw",
        "Average power that may still be drawn until the quarter hour ends without exceeding \
         the reference power, kW.",
        Some(s.headroom_kw),
    );
    gauge(
        "smarty_guard_reference_power_kw",
        "The reference power the guard watches, kW.",
        Some(s.reference_power_kw),
    );
    gauge(
        "smarty_guard_will_exceed",
        "1 when the quarter hour ends above the reference power at the present power (or \
         exceeded it already).",
        Some(if will_exceed(s.verdict) { 1.0 } else { 0.0 }),
    );
    gauge(
        "smarty_guard_exceeded",
        "1 when the quarter hour's energy is over its allowance already.",
        Some(if s.verdict == Verdict::Exceeded {
            1.0
        } else {
            0.0
        }),
    );
    gauge(
        "smarty_guard_month_peak_kw",
        "The highest quarter-hour average of the local month so far, kW.",
        s.month_peak_kw,
    );
}

type Labels = Vec<(&'static str, String)>;

/// One metric family: a name (counters without `_total`), its help and samples.
#[derive(Debug)]
struct Family {
    name: String,
    help: String,
    counter: bool,
    samples: Vec<(Labels, f64)>,
}

#[derive(Default)]
struct Families(BTreeMap<String, Family>);

impl Families {
    fn add(&mut self, name: &str, help: &str, counter: bool, labels: Labels, value: f64) {
        let family = self.0.entry(name.to_owned()).or_insert_with(|| Family {
            name: name.to_owned(),
            help: help.to_owned(),
            counter,
            samples: Vec::new(),
        });
        // One type per name; a clash (never with the registry's names) keeps the first, and one
        // sample per label set.
        if family.counter == counter && !family.samples.iter().any(|(l, _)| *l == labels) {
            family.samples.push((labels, value));
        }
    }

    fn counter(&mut self, name: &str, help: &str, labels: Labels, value: f64) {
        self.add(name, help, true, labels, value);
    }

    fn gauge(&mut self, name: &str, help: &str, labels: Labels, value: f64) {
        self.add(name, help, false, labels, value);
    }
}

/// The live state as prometheus-client sees it: a collector whose samples are the latest
/// totals at each scrape.
#[derive(Debug)]
struct Exposition(Arc<LiveState>);

impl Collector for Exposition {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for family in families(&self.0).into_values() {
            let metric_type = if family.counter {
                ConstCounter::new(0.0).metric_type()
            } else {
                ConstGauge::new(0.0).metric_type()
            };
            let mut metric =
                encoder.encode_descriptor(&family.name, &family.help, None, metric_type)?;
            match family.samples.as_slice() {
                // A gateway-wide value: no labels (the family encoder would write `{}`).
                [(labels, value)] if labels.is_empty() => {
                    encode_sample(family.counter, metric, *value)?;
                }
                samples => {
                    for (labels, value) in samples {
                        encode_sample(family.counter, metric.encode_family(labels)?, *value)?;
                    }
                }
            }
        }
        Ok(())
    }
}

fn encode_sample(counter: bool, sample: MetricEncoder<'_>, value: f64) -> std::fmt::Result {
    if counter {
        ConstCounter::new(value).encode(sample)
    } else {
        ConstGauge::new(value).encode(sample)
    }
}

/// The `/metrics` route (the web server puts the access token in front of it).
pub fn router(live: Arc<LiveState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(live)
}

async fn metrics(State(live): State<Arc<LiveState>>, headers: HeaderMap) -> Response {
    let wants_openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let (body, content_type) = if wants_openmetrics {
        (openmetrics(&live), OPENMETRICS)
    } else {
        (prometheus_text(&live), PROMETHEUS_TEXT)
    };
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use smarty_model::event::{MeterEvent, MeterStatus, TelegramEvent};
    use smarty_p1::{Decoder, DecoderConfig, Stats};
    use std::time::SystemTime;
    use tower::ServiceExt as _;

    const TELEGRAM: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../smarty-p1/tests/data/telegrams/meterlogger_lux5_253663629_d_2026.txt"
    ));

    pub(crate) fn telegram(meter: &str, received: SystemTime) -> MeterEvent {
        let mut decoder = Decoder::new(DecoderConfig::default());
        decoder.push(TELEGRAM);
        let decoded = decoder.finish().unwrap().unwrap();
        let event = TelegramEvent::new(&Arc::from(meter), &decoded, received);
        MeterEvent::Telegram(Arc::new(event))
    }

    pub(crate) fn status(meter: &str, connected: bool, last: Option<SystemTime>) -> MeterEvent {
        // Real decoder counters: one accepted telegram, one CRC rejection.
        let mut decoder = Decoder::new(DecoderConfig::default());
        decoder.push(TELEGRAM);
        let mut bad = TELEGRAM.to_vec();
        let crc = bad.len() - 3;
        bad[crc] = if bad[crc] == b'0' { b'1' } else { b'0' };
        decoder.push(&bad);
        while decoder.finish().is_some() {}
        let stats: Stats = *decoder.stats();
        assert_eq!(stats.telegrams, 1);
        assert_eq!(stats.rejected(RejectReason::Crc), 1);
        MeterEvent::Status(Arc::new(MeterStatus {
            meter: Arc::from(meter),
            source: "tcp://127.0.0.1:1".into(),
            connected,
            last_telegram: last,
            stats,
            reconnects: 3,
            last_error: (!connected).then(|| "connection refused".into()),
        }))
    }

    /// `GET path` (with `Accept: accept`) in process: status, content type, body.
    pub(crate) async fn get(
        router: Router,
        path: &str,
        accept: Option<&str>,
    ) -> (u16, String, String) {
        let mut request = axum::http::Request::get(path);
        if let Some(accept) = accept {
            request = request.header(header::ACCEPT, accept);
        }
        let response = router
            .oneshot(request.body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (
            status,
            content_type,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    /// The value of the sample `name{labels}` (labels exactly as exposed).
    pub(crate) fn sample(exposition: &str, series: &str) -> Option<f64> {
        exposition.lines().find_map(|line| {
            let (s, v) = line.rsplit_once(' ')?;
            (s == series).then(|| v.parse().unwrap())
        })
    }

    #[tokio::test]
    async fn metrics_carry_values_labels_and_gateway_counters() {
        let state = LiveState::new(["home"]);
        let now = SystemTime::now();
        state.update(&telegram("home", now));
        state.update(&status("home", true, Some(now)));
        state.mqtt_queue().set(7, None);
        let app = router(Arc::clone(&state));

        let (code, head, text) = get(app.clone(), "/metrics", None).await;
        assert_eq!(code, 200);
        assert!(head.contains("text/plain; version=0.0.4"), "{head}");
        for (series, value) in [
            ("smarty_energy_import_kwh_total{meter=\"home\"}", 273.764),
            ("smarty_energy_export_kwh_total{meter=\"home\"}", 112743.03),
            (
                "smarty_reactive_energy_import_kvarh_total{meter=\"home\"}",
                462.59,
            ),
            ("smarty_power_export_kw{meter=\"home\"}", 0.897),
            ("smarty_power_import_l1_kw{meter=\"home\"}", 0.0),
            ("smarty_voltage_l1_v{meter=\"home\"}", 231.0),
            ("smarty_voltage_l2_v{meter=\"home\"}", 229.0),
            ("smarty_current_l3_a{meter=\"home\"}", 1.0),
            ("smarty_power_failures_total{meter=\"home\"}", 1067.0),
            (
                "smarty_mbus_gas_m3_total{meter=\"home\",channel=\"1\"}",
                14239.771,
            ),
            (
                "smarty_meter_info{meter=\"home\",meter_id=\"SAG1030700012701\"}",
                1.0,
            ),
            ("smarty_telegrams_total{meter=\"home\"}", 1.0),
            (
                "smarty_rejections_total{meter=\"home\",reason=\"crc\"}",
                1.0,
            ),
            (
                "smarty_rejections_total{meter=\"home\",reason=\"wrong_key\"}",
                0.0,
            ),
            ("smarty_reconnects_total{meter=\"home\"}", 3.0),
            ("smarty_connected{meter=\"home\"}", 1.0),
            ("smarty_mqtt_queue_depth", 7.0),
        ] {
            assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
        }
        let ts = sample(
            &text,
            "smarty_last_telegram_timestamp_seconds{meter=\"home\"}",
        )
        .unwrap();
        let expected = now.duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
        assert!((ts - expected).abs() < 1e-3);
        assert!(text.contains("# TYPE smarty_energy_import_kwh_total counter\n"));
        assert!(text.contains("# TYPE smarty_voltage_l1_v gauge\n"));
        assert!(!text.contains("# EOF"));
        // Identifiers and texts are no metrics.
        assert!(!text.contains("smarty_meter_id"));

        // OpenMetrics when asked for.
        let (code, head, om) = get(
            app,
            "/metrics",
            Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
        )
        .await;
        assert_eq!(code, 200);
        assert!(head.contains("application/openmetrics-text"), "{head}");
        assert!(om.contains("# TYPE smarty_energy_import_kwh counter\n"));
        assert!(om.ends_with("# EOF\n"));
        assert_eq!(
            sample(&om, "smarty_energy_import_kwh_total{meter=\"home\"}"),
            Some(273.764)
        );

        check_exposition(&text, false);
        check_exposition(&om, true);
    }

    #[tokio::test]
    async fn counters_follow_the_latest_totals() {
        let state = LiveState::new(["home"]);
        state.update(&telegram("home", SystemTime::now()));
        let first = prometheus_text(&state);
        state.update(&telegram("home", SystemTime::now()));
        let second = prometheus_text(&state);
        let series = "smarty_energy_import_kwh_total{meter=\"home\"}";
        assert_eq!(sample(&first, series), sample(&second, series));
    }

    /// Validates an exposition with `promtool check metrics` when promtool is installed (the
    /// Prometheus text format only: promtool 2.x lints OpenMetrics counters wrongly), and always
    /// with the parser-level checks below.
    pub(crate) fn check_exposition(text: &str, openmetrics: bool) {
        parser_check(text, openmetrics);
        eprintln!(
            "exposition ({}): parser-level check passed",
            if openmetrics {
                "OpenMetrics"
            } else {
                "Prometheus text"
            }
        );
        if openmetrics {
            return;
        }
        let child = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(e) => {
                eprintln!("promtool check metrics: NOT RUN (promtool not found: {e})");
                return;
            }
        };
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool check metrics failed:\n{}{}\n{text}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("promtool check metrics: passed");
    }

    /// Every sample belongs to a declared `# TYPE`, names are valid, counters end in `_total`,
    /// values parse, families are not repeated, series are unique.
    fn parser_check(text: &str, openmetrics: bool) {
        fn valid_name(name: &str) -> bool {
            let mut chars = name.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        }
        let mut types: BTreeMap<String, String> = BTreeMap::new();
        let mut current: Option<(String, String)> = None;
        let mut series = BTreeSet::new();
        let mut lines = text.lines().peekable();
        while let Some(line) = lines.next() {
            if let Some(rest) = line.strip_prefix("# ") {
                let mut parts = rest.splitn(3, ' ');
                let (tag, name) = (parts.next().unwrap(), parts.next().unwrap_or(""));
                match tag {
                    "HELP" => assert!(valid_name(name), "{line}"),
                    "TYPE" => {
                        let kind = parts.next().unwrap_or("").to_owned();
                        assert!(valid_name(name), "{line}");
                        assert!(matches!(kind.as_str(), "counter" | "gauge"), "{line}");
                        assert!(
                            types.insert(name.to_owned(), kind.clone()).is_none(),
                            "family {name} declared twice"
                        );
                        if kind == "counter" && !openmetrics {
                            assert!(name.ends_with("_total"), "{line}");
                        }
                        current = Some((name.to_owned(), kind));
                    }
                    "EOF" => {
                        assert!(openmetrics, "# EOF in the Prometheus text format");
                        assert!(lines.peek().is_none(), "# EOF is last");
                    }
                    _ => panic!("unexpected comment {line}"),
                }
                continue;
            }
            assert!(!line.is_empty(), "empty line");
            let (name_labels, value) = line.rsplit_once(' ').unwrap();
            let name = name_labels.split('{').next().unwrap();
            assert!(valid_name(name), "{line}");
            value.parse::<f64>().unwrap_or_else(|_| panic!("{line}"));
            let (family, kind) = current.as_ref().unwrap_or_else(|| panic!("untyped {line}"));
            if kind == "counter" {
                assert!(name.ends_with("_total"), "{line}");
                let expected = if openmetrics {
                    format!("{family}_total")
                } else {
                    family.clone()
                };
                assert_eq!(name, expected, "{line} outside its family");
            } else {
                assert_eq!(name, family, "{line} outside its family");
            }
            if let Some(labels) = name_labels.strip_prefix(name)
                && !labels.is_empty()
            {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
                for pair in labels[1..labels.len() - 1].split("\",") {
                    let (key, _) = pair.split_once("=\"").unwrap_or_else(|| panic!("{line}"));
                    assert!(valid_name(key), "{line}");
                }
            }
            assert!(series.insert(name_labels.to_owned()), "duplicate {line}");
        }
        if openmetrics {
            assert!(text.ends_with("# EOF\n"));
        }
        assert!(!types.is_empty());
    }
}
