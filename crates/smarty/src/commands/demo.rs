//! `smarty demo`: a virtual meter on a pseudo-terminal and the whole service on it — history,
//! dashboard, API — in one command.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use jiff::{SignedDuration, Timestamp};
use smarty_p1::{Decoder, DecoderConfig, Key};

use crate::cli::{DemoArgs, Firmware, MeterArgs};
use crate::config::{Config, MeterConfig, default_state_dir};
use crate::output;
#[cfg(unix)]
use crate::simulate::PtyLink;
#[cfg(not(unix))]
use crate::simulate::TcpLink;
use crate::simulate::{FIRST_FRAME_DELAY, Link, Meter};
use smarty_model::secret::Secret;
use smarty_model::time::meter_zone;
use smarty_store::config::StoreSection;
use smarty_store::lock::WriterLock;
use smarty_store::{Reading, Store, StoreConfig};
use smarty_web::HttpConfig;

/// The demo meter's name.
const NAME: &str = "demo";

/// Runs `smarty demo`.
///
/// # Errors
/// When another process writes the demo's history, the dashboard's address is taken (both
/// checked before anything is changed), no pseudo-terminal can be opened, or the state
/// directory cannot be written.
pub async fn run(args: DemoArgs) -> Result<()> {
    let meter_args = MeterArgs {
        interval: args.interval,
        count: None,
        key: None,
        key_file: None,
        auth_key: None,
        plain: false,
        gas: true,
        water: true,
        firmware: Firmware::Full,
        solar_kwp: 4.0,
        frame_counter: None,
        seed: Some(20_251_122),
        start: None,
    };
    let (mut meter, key) = Meter::new(&meter_args)?;
    let key = key.key.context("the demo meter always encrypts")?;
    let key_hex = smarty_p1::hex::upper(key.as_bytes()).to_string();

    let state_dir = match &args.state_dir {
        Some(dir) => dir.clone(),
        None => default_state_dir()
            .map(|dir| dir.join("demo"))
            .unwrap_or_else(|| PathBuf::from("smarty-demo")),
    };
    let store_path = state_dir.join(smarty_store::config::FILE_NAME);
    let store_config = StoreConfig::at(store_path.clone());
    // Nothing is deleted or printed before the demo holds everything it needs: the store's
    // writer lock (another demo on this state directory holds it while it runs), the
    // dashboard's port and the virtual meter's pseudo-terminal.
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("cannot create {}", state_dir.display()))?;
    let _lock = WriterLock::acquire(&store_path).with_context(|| {
        format!(
            "the demo's history in {} is in use; stop the other demo, or give this one its own \
             --state-dir DIR and --http ADDR",
            state_dir.display()
        )
    })?;
    let listener = std::net::TcpListener::bind(&args.http).with_context(|| {
        format!(
            "cannot listen on {} for the dashboard (another smarty demo or server?); choose \
             another address with --http, e.g. --http 127.0.0.1:9000. Nothing was changed",
            args.http
        )
    })?;
    let address = listener
        .local_addr()
        .with_context(|| format!("cannot listen on {}", args.http))?;
    if !address.ip().is_loopback() {
        bail!(
            "--http {}: the demo serves its dashboard on this machine only (a loopback address \
             such as 127.0.0.1:8080), as it has no access token; `smarty run` with [http] \
             token_file serves other machines",
            args.http
        );
    }
    let http = address.to_string();
    // The virtual meter's line: a pseudo-terminal, read like a serial device; where there are
    // none (Windows), a TCP port on loopback, read like ser2net.
    #[cfg(unix)]
    let (link, source, line): (Box<dyn Link>, String, &str) = {
        let pty =
            PtyLink::open(None).context("cannot open a pseudo-terminal for the virtual meter")?;
        let source = pty.reader_path().display().to_string();
        (Box::new(pty), source, "the pseudo-terminal")
    };
    #[cfg(not(unix))]
    let (link, source, line): (Box<dyn Link>, String, &str) = {
        let tcp = TcpLink::listen("127.0.0.1:0")
            .context("cannot open a TCP port for the virtual meter")?;
        let source = tcp.describe();
        (Box::new(tcp), source, "the TCP port")
    };
    // A new history each time: the virtual meter's registers start afresh.
    for suffix in ["", "-wal", "-shm"] {
        let mut path = store_path.clone().into_os_string();
        path.push(suffix);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| format!("cannot reset {}", store_path.display()));
            }
        }
    }
    if args.history_days > 0 {
        let store = Store::open(&store_config)?;
        let started = std::time::Instant::now();
        let days = args.history_days;
        let key = key.clone();
        let (meter_back, count) = tokio::task::spawn_blocking(move || {
            let count = backfill(&mut meter, &key, &store, days);
            (meter, count)
        })
        .await?;
        meter = meter_back;
        output::note(format_args!(
            "smarty demo: {} day{} of history ({} telegrams) written to {} in {:.1} s",
            days,
            if days == 1 { "" } else { "s" },
            count?,
            store_path.display(),
            started.elapsed().as_secs_f64()
        ));
    }

    output::note(format_args!(
        "smarty demo: a virtual Smarty meter ({}, with gas and water meters on M-Bus) sends an \
encrypted frame every {:?} to {line} {source}.\nsmarty reads it there like a real meter on \
a USB P1 cable — the same as running:\n\n    smarty read {source} --key {key_hex}\n\n\
Dashboard: http://{}/   (history in {})\nPress Ctrl-C to stop.\n",
        meter.meter_id(),
        args.interval,
        http,
        state_dir.display(),
    ));

    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let mut link = link;
    let worker = tokio::task::spawn_blocking(move || {
        // Give the reader a moment to open the device before the first frame.
        std::thread::sleep(FIRST_FRAME_DELAY);
        let result = meter.run(link.as_mut(), false, &stop_rx);
        drop(link);
        result
    });

    let mut http_config = HttpConfig::default();
    http_config.listen = http;
    let mut store_section = StoreSection::default();
    store_section.path = Some(store_path.clone());
    let config = Config {
        state_dir: Some(state_dir.clone()),
        meters: vec![MeterConfig {
            name: NAME.into(),
            source,
            key: Some(Secret::from(key_hex)),
            key_file: None,
            auth_key: None,
            aad: None,
            verify_tag: true,
            reject_replay: false,
            baud: 115_200,
            serial: "8N1".into(),
            interval_s: args.interval.as_secs_f64().max(1.0),
        }],
        http: Some(http_config),
        store: Some(store_section),
        ..Config::default()
    };
    let stdout: Box<dyn Write + Send> = Box::new(std::io::stdout());
    let console = output::for_format(args.format, stdout);
    // The service binds the dashboard's address itself: let go of it just before (the store's
    // lock stays held until the demo ends).
    drop(listener);
    let result = crate::service::serve(config, Some((console, args.count))).await;
    let _ = stop_tx.send(());
    let _ = worker.await;
    result
}

/// Writes `days` of the virtual meter's past into `store`: a telegram every 5 minutes, every
/// minute for the last week and every 10 s for the last two days; returns how many.
fn backfill(meter: &mut Meter, key: &Key, store: &Store, days: u32) -> Result<u64> {
    let zone = meter_zone();
    let now = Timestamp::now();
    let start = now - SignedDuration::from_hours(24 * i64::from(days));
    let week = now - SignedDuration::from_hours(7 * 24);
    let fine = now - SignedDuration::from_hours(48);
    let mut decoder = Decoder::new(DecoderConfig::new(key.clone()));
    let mut writer = store.writer()?;
    let name: Arc<str> = Arc::from(NAME);
    let mut t = start;
    let mut count = 0u64;
    let mut flushed = 0u64;
    while t < now {
        let frame = meter.next_frame(&t.to_zoned(zone.clone()));
        decoder.push(&frame);
        while let Some(result) = decoder.next() {
            let decoded = result.map_err(|e| anyhow::anyhow!("the demo meter's frame: {e}"))?;
            let (reading, mbus) = Reading::from_telegram(&name, &decoded.telegram);
            if let Some(reading) = reading {
                writer.push(reading);
                count += 1;
            }
            for m in mbus {
                writer.push_mbus(m);
            }
        }
        if count - flushed >= 20_000 {
            writer.flush()?;
            flushed = count;
        }
        t += if t < week {
            SignedDuration::from_mins(5)
        } else if t < fine {
            SignedDuration::from_mins(1)
        } else {
            SignedDuration::from_secs(10)
        };
    }
    writer.flush()?;
    Ok(count)
}
