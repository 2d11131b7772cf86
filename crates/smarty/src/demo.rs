//! `smarty demo`: a virtual meter on a pseudo-terminal and the reader on it, in one command.

use std::io::Write;
use std::time::Instant;

use anyhow::{Context, Result};
use smarty_p1::{Decoder, DecoderConfig};

use crate::cli::{DemoArgs, Firmware, MeterArgs, SerialArgs};
use crate::output;
use crate::pipeline;
use crate::simulate::{FIRST_FRAME_DELAY, Link, Meter, PtyLink};
use crate::source::SerialSource;

/// Runs `smarty demo`.
///
/// # Errors
/// When no pseudo-terminal can be opened.
pub async fn run(args: DemoArgs) -> Result<()> {
    let meter_args = MeterArgs {
        interval: args.interval,
        count: args.count,
        key: None,
        key_file: None,
        auth_key: None,
        plain: false,
        gas: true,
        water: true,
        firmware: Firmware::Full,
        solar_kwp: 4.0,
        frame_counter: None,
        seed: None,
        start: None,
    };
    let (mut meter, key) = Meter::new(&meter_args)?;
    let key = key.key.context("the demo meter always encrypts")?;
    let pty = PtyLink::open(None).context("cannot open a pseudo-terminal for the virtual meter")?;
    let path = pty.reader_path().to_owned();
    let key_hex = output::json::hex(key.as_bytes());
    eprintln!(
        "smarty demo: a virtual Smarty meter ({}, with gas and water meters on M-Bus) sends an \
encrypted frame every {:?} to the pseudo-terminal {}.\nsmarty reads it there like a real meter on \
a USB P1 cable — the same as running:\n\n    smarty read {} --key {key_hex}\n\nPress Ctrl-C to stop.\n",
        meter.meter_id(),
        args.interval,
        path.display(),
        path.display(),
    );

    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let mut link: Box<dyn Link> = Box::new(pty);
    let worker = tokio::task::spawn_blocking(move || {
        // Give the reader a moment to open the device before the first frame.
        std::thread::sleep(FIRST_FRAME_DELAY);
        let result = meter.run(link.as_mut(), false, &stop_rx);
        drop(link);
        result
    });

    let source = SerialSource::new(
        &path,
        &SerialArgs {
            baud: 115_200,
            serial: crate::cli::SerialFormat {
                data_bits: 8,
                parity: 'N',
                stop_bits: 1,
            },
        },
    );
    let mut decoder = Decoder::new(DecoderConfig {
        key: Some(key),
        ..DecoderConfig::default()
    });
    let stdout: Box<dyn Write + Send> = Box::new(std::io::stdout());
    let mut sink = output::for_format(args.format, stdout);
    let started = Instant::now();
    tokio::select! {
        end = pipeline::run(&source, &mut decoder, sink.as_mut(), args.count) => { end?; }
        _ = tokio::signal::ctrl_c() => {}
    }
    let _ = stop_tx.send(());
    let _ = worker.await;
    eprintln!("{}", pipeline::summary(decoder.stats(), started.elapsed()));
    Ok(())
}
