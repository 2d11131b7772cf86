//! The pipeline: a source's bytes → [`Decoder`] → sinks, with reconnects for live sources.

use std::io;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use smarty_p1::{Decoder, DecryptError, Rejection, Stats};
use tokio::io::AsyncReadExt;

use crate::output::Sink;
use crate::source::Source;

/// First wait before reopening a lost live source; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(500);
/// Longest wait between reopen attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Why the pipeline stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// A finite source was read to its end.
    Input,
    /// The output was closed (e.g. `smarty read … | head`).
    OutputClosed,
    /// The requested number of telegrams was accepted.
    Limit,
}

/// Runs a source through a decoder into a sink until a finite source ends or the output is
/// closed. Live sources are reopened with exponential back-off; state changes are logged once.
///
/// # Errors
/// When a finite source cannot be opened or read.
pub async fn run(
    source: &dyn Source,
    decoder: &mut Decoder,
    sink: &mut dyn Sink,
    limit: Option<u64>,
) -> Result<End> {
    run_with(source, decoder, sink, limit, None).await
}

/// [`run`] that also reopens a live source after `silence` without a frame or telegram
/// (a cable that still looks open but delivers nothing).
///
/// # Errors
/// As [`run`].
pub async fn run_with(
    source: &dyn Source,
    decoder: &mut Decoder,
    sink: &mut dyn Sink,
    limit: Option<u64>,
    silence: Option<Duration>,
) -> Result<End> {
    let started = Instant::now();
    let now_ms = move || started.elapsed().as_millis() as u64;
    let gap = Duration::from_millis(decoder_gap_ms(decoder).max(1));
    let mut backoff = MIN_BACKOFF;
    let mut was_connected = false;
    let mut last_error: Option<String> = None;
    let mut buf = vec![0u8; 8192];
    loop {
        let mut reader = match source.open().await {
            Ok(reader) => reader,
            Err(e) if source.is_live() => {
                let message = e.to_string();
                if last_error.as_deref() != Some(&message) {
                    tracing::warn!("cannot open {source}: {message}; retrying");
                    last_error = Some(message);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
            Err(e) => return Err(e).with_context(|| format!("cannot open {source}")),
        };
        if source.is_live() {
            tracing::info!(
                "{} {source}",
                if was_connected {
                    "reconnected to"
                } else {
                    "reading"
                }
            );
        }
        sink.source_state(true, None);
        was_connected = true;
        last_error = None;
        // Silence means no frame or telegram found at all (a meter without a key still
        // delivers frames).
        let found = |d: &Decoder| d.stats().frames + d.stats().plain_telegrams;
        let mut progress = (found(decoder), Instant::now());
        let ended = loop {
            if let Some(silence) = silence {
                let units = found(decoder);
                if units != progress.0 {
                    progress = (units, Instant::now());
                } else if progress.1.elapsed() > silence {
                    break Some(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no frame for {} s", silence.as_secs()),
                    ));
                }
            }
            let read = if source.is_live() {
                match tokio::time::timeout(gap, reader.read(&mut buf)).await {
                    Ok(read) => read,
                    Err(_) => {
                        decoder.check_gap(now_ms());
                        if drain(decoder, sink, false)? {
                            return Ok(End::OutputClosed);
                        }
                        continue;
                    }
                }
            } else {
                reader.read(&mut buf).await
            };
            match read {
                Ok(0) => break None,
                Ok(n) => {
                    backoff = MIN_BACKOFF;
                    decoder.push_at(&buf[..n], now_ms());
                    if drain(decoder, sink, false)? {
                        return Ok(End::OutputClosed);
                    }
                    if limit.is_some_and(|n| decoder.stats().telegrams >= n) {
                        return Ok(End::Limit);
                    }
                }
                Err(e) => break Some(e),
            }
        };
        if !source.is_live() {
            if let Some(e) = ended {
                return Err(e).with_context(|| format!("cannot read {source}"));
            }
            if drain(decoder, sink, true)? {
                return Ok(End::OutputClosed);
            }
            return Ok(End::Input);
        }
        let why = match &ended {
            Some(e) => format!("lost {source}: {e}"),
            None => format!("{source} closed the connection"),
        };
        tracing::warn!("{why}; reconnecting");
        sink.source_state(false, Some(&why));
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn decoder_gap_ms(decoder: &Decoder) -> u64 {
    decoder.framing_config().gap_ms
}

/// Hands every complete result to the sink; at the end of a finite input also what only the
/// end completes. Returns `true` when the output is closed.
fn drain(decoder: &mut Decoder, sink: &mut dyn Sink, at_end: bool) -> Result<bool> {
    loop {
        let result = if at_end {
            decoder.finish()
        } else {
            decoder.next()
        };
        let Some(result) = result else {
            return Ok(false);
        };
        let written = match result {
            Ok(decoded) => sink.telegram(&decoded),
            Err(rejection) => rejected(rejection, decoder, sink),
        };
        sink.counters(decoder.stats());
        if closed(written)? {
            return Ok(true);
        }
    }
}

fn rejected(rejection: Rejection, decoder: &Decoder, sink: &mut dyn Sink) -> io::Result<()> {
    if rejection == Rejection::Decrypt(DecryptError::NoKey) && sink.forwards_undecrypted() {
        // Without a key the frames can still be forwarded (--format raw).
        if let Some(frame) = decoder.last_unit() {
            return sink.undecrypted_frame(frame);
        }
    }
    report(&rejection);
    Ok(())
}

fn closed(written: io::Result<()>) -> Result<bool> {
    match written {
        Ok(()) => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(true),
        Err(e) => Err(e).context("cannot write the output"),
    }
}

fn report(rejection: &Rejection) {
    tracing::warn!("rejected: {rejection}");
}

/// The one-line summary printed on exit.
pub fn summary(stats: &Stats, elapsed: Duration) -> String {
    let mut line = format!(
        "smarty: {} frame{}, {} plaintext telegram{}, {} telegram{} accepted",
        stats.frames,
        plural(stats.frames),
        stats.plain_telegrams,
        plural(stats.plain_telegrams),
        stats.telegrams,
        plural(stats.telegrams),
    );
    if stats.unauthenticated > 0 {
        line.push_str(&format!(" ({} not authenticated)", stats.unauthenticated));
    }
    let rejections: Vec<String> = stats
        .rejections()
        .map(|(reason, n)| format!("{n} {}", reason.as_str()))
        .collect();
    if rejections.is_empty() {
        line.push_str(", none rejected");
    } else {
        line.push_str(&format!(", rejected: {}", rejections.join(", ")));
    }
    if stats.with_unknown_lines > 0 {
        line.push_str(&format!(
            ", {} with lines not understood",
            stats.with_unknown_lines
        ));
    }
    if stats.noise_bytes > 0 {
        line.push_str(&format!(", {} noise bytes skipped", stats.noise_bytes));
    }
    line.push_str(&format!(" in {:.1} s", elapsed.as_secs_f64()));
    line
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}
