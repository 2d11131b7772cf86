//! The pipeline: a source's bytes → [`Decoder`] → sinks, with reconnects for live sources.
//!
//! Each result goes to the sink, then the pipeline awaits [`Sink::deliver`] before it decodes
//! the next one or reads more: a sink feeding lossless outputs slows the source down instead
//! of dropping telegrams. Rejections are logged through a [`RejectionLog`] (one line per
//! reason and interval, with counts), never one line each.

use std::collections::BTreeMap;
use std::io;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use smarty_p1::{Decoder, DecryptError, RejectReason, Rejection, Stats};
use tokio::io::AsyncReadExt;

use crate::key::{Settings, explain};
use crate::output::Sink;
use crate::source::Source;
use smarty_model::backoff::Backoff;

/// First wait before reopening a lost live source; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(500);
/// Longest wait between reopen attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How often a reason of rejection may make a log line on a live source.
pub const REJECTION_LOG_INTERVAL: Duration = Duration::from_secs(60);

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

/// What else a pipeline does besides decoding.
#[derive(Debug, Default, Clone, Copy)]
pub struct Options {
    /// Stop after this many accepted telegrams.
    pub limit: Option<u64>,
    /// Reopen a live source after this long without a frame or telegram (a cable that still
    /// looks open but delivers nothing).
    pub silence: Option<Duration>,
}

/// Bytes read at a time from a file or standard input.
pub const FILE_BLOCK: usize = 1 << 20;

/// Runs a source through a decoder into a sink until a finite source ends or the output is
/// closed. Live sources are reopened with exponential back-off; state changes are logged once
/// and reported to the sink ([`Sink::source_state`]), failures to open included.
///
/// # Errors
/// When a finite source cannot be opened or read, or the output fails (other than a closed
/// pipe).
pub async fn run(
    source: &dyn Source,
    decoder: &mut Decoder,
    sink: &mut dyn Sink,
    options: Options,
    rejections: &mut RejectionLog,
) -> Result<End> {
    // The framing's gap is measured on a clock that runs only while the source is waited
    // for: time the pipeline spends waiting for its outputs (back-pressure, a blocked stdout)
    // is not the source's silence, and must never cut a frame.
    let mut source_clock = Duration::ZERO;
    let ms = |clock: Duration| u64::try_from(clock.as_millis()).unwrap_or(u64::MAX);
    let gap = Duration::from_millis(decoder.framing_config().gap_ms.max(1));
    let mut backoff = Backoff::new(MIN_BACKOFF, MAX_BACKOFF);
    let mut was_connected = false;
    let mut last_error: Option<String> = None;
    // Devices and sockets deliver a few hundred bytes at a time; files and pipes are read in
    // large blocks (few system calls, and few trips through the runtime's blocking pool).
    let mut buf = vec![0u8; if source.is_live() { 8192 } else { FILE_BLOCK }];
    loop {
        let opening = Instant::now();
        let opened = source.open().await;
        source_clock += opening.elapsed();
        let mut reader = match opened {
            Ok(reader) => reader,
            Err(e) if source.is_live() => {
                let message = format!("cannot open {source}: {e}");
                if last_error.as_deref() != Some(&message) {
                    tracing::warn!("{message}; retrying");
                    sink.source_state(false, Some(&message));
                    last_error = Some(message);
                }
                if closed(sink.deliver().await)? {
                    return Ok(End::OutputClosed);
                }
                let wait = backoff.next_wait();
                tokio::time::sleep(wait).await;
                source_clock += wait;
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
        if closed(sink.deliver().await)? {
            return Ok(End::OutputClosed);
        }
        was_connected = true;
        last_error = None;
        // Silence means no frame or telegram found at all (a meter without a key still
        // delivers frames).
        let found = |d: &Decoder| d.stats().frames + d.stats().plain_telegrams;
        let mut progress = (found(decoder), Instant::now());
        let ended = loop {
            if let Some(silence) = options.silence {
                let units = found(decoder);
                if units != progress.0 {
                    progress = (units, Instant::now());
                } else if progress.1.elapsed() > silence {
                    break Some(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no frame for {} s", silence.as_secs()),
                    ));
                }
            }
            let waiting = Instant::now();
            let read = if source.is_live() {
                let read = tokio::time::timeout(gap, reader.read(&mut buf)).await;
                source_clock += waiting.elapsed();
                match read {
                    Ok(read) => read,
                    Err(_) => {
                        decoder.check_gap(ms(source_clock));
                        if drain(decoder, sink, rejections, false).await? {
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
                    backoff.reset();
                    if source.is_live() {
                        decoder.push_at(&buf[..n], ms(source_clock));
                    } else {
                        // A file has no gaps: only its end completes what is cut.
                        decoder.push(&buf[..n]);
                    }
                    if drain(decoder, sink, rejections, false).await? {
                        return Ok(End::OutputClosed);
                    }
                    if options
                        .limit
                        .is_some_and(|n| decoder.stats().telegrams >= n)
                    {
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
            if drain(decoder, sink, rejections, true).await? {
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
        if closed(sink.deliver().await)? {
            return Ok(End::OutputClosed);
        }
        let wait = backoff.next_wait();
        tokio::time::sleep(wait).await;
        source_clock += wait;
    }
}

/// Hands every complete result to the sink and waits for its delivery; at the end of a finite
/// input also what only the end completes. Returns `true` when the output is closed.
async fn drain(
    decoder: &mut Decoder,
    sink: &mut dyn Sink,
    rejections: &mut RejectionLog,
    at_end: bool,
) -> Result<bool> {
    loop {
        let result = if at_end {
            decoder.finish()
        } else {
            decoder.next()
        };
        let Some(result) = result else {
            break;
        };
        let written = match result {
            Ok(decoded) => sink.telegram(&decoded),
            Err(rejection) => rejected(rejection, decoder, sink, rejections),
        };
        sink.counters(decoder.stats());
        if closed(written)? || closed(sink.deliver().await)? {
            return Ok(true);
        }
    }
    rejections.tick(Instant::now());
    // A sink may hold something back (a coalesced status): give it the chance.
    closed(sink.deliver().await)
}

fn rejected(
    rejection: Rejection,
    decoder: &Decoder,
    sink: &mut dyn Sink,
    rejections: &mut RejectionLog,
) -> io::Result<()> {
    if rejection == Rejection::Decrypt(DecryptError::NoKey) && sink.forwards_undecrypted() {
        // Without a key the frames can still be forwarded (--format raw).
        if let Some(frame) = decoder.last_item() {
            return sink.undecrypted_frame(frame);
        }
    }
    rejections.record(&rejection, Instant::now());
    Ok(())
}

fn closed(written: io::Result<()>) -> Result<bool> {
    match written {
        Ok(()) => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(true),
        Err(e) => Err(e).context("cannot write the output"),
    }
}

/// Rejection warnings, rate-limited: at most one line per reason per interval, with the count
/// and the last rejection's message (100,000 fake headers make a few lines, not 100,000).
///
/// With `prompt` (live sources), the first rejection of a reason is logged at once and the
/// ones after it are counted until the interval has passed; without (files), every reason is
/// logged once with its count when the interval passes or at [`RejectionLog::finish`].
#[derive(Debug)]
pub struct RejectionLog {
    interval: Duration,
    prompt: bool,
    /// How the messages name the settings to change.
    settings: Settings,
    reasons: BTreeMap<usize, Pending>,
}

#[derive(Debug)]
struct Pending {
    /// Rejections not logged yet.
    count: u64,
    /// The message of the last of them.
    message: String,
    /// When the first of them came.
    since: Instant,
    /// When the last line for this reason was written.
    logged: Option<Instant>,
}

impl RejectionLog {
    /// A log writing at most one line per reason every `interval`, naming the settings to
    /// change as `settings` does.
    pub fn new(interval: Duration, prompt: bool, settings: Settings) -> Self {
        RejectionLog {
            interval,
            prompt,
            settings,
            reasons: BTreeMap::new(),
        }
    }

    /// The log for `source`: prompt for live sources, a line per reason at the end for files.
    pub fn for_source(source: &dyn Source, settings: Settings) -> Self {
        Self::new(REJECTION_LOG_INTERVAL, source.is_live(), settings)
    }

    /// Takes in one rejection at `now`.
    pub fn record(&mut self, rejection: &Rejection, now: Instant) {
        let reason = reason_index(rejection.reason());
        let entry = self.reasons.entry(reason).or_insert_with(|| Pending {
            count: 0,
            message: String::new(),
            since: now,
            logged: None,
        });
        let quiet_for = entry.logged.map(|t| now.saturating_duration_since(t));
        if self.prompt && entry.count == 0 && quiet_for.is_none_or(|q| q >= self.interval) {
            tracing::warn!("rejected: {}", explain(rejection, self.settings));
            entry.logged = Some(now);
            return;
        }
        if entry.count == 0 {
            entry.since = now;
        }
        entry.count += 1;
        entry.message = explain(rejection, self.settings);
    }

    /// Writes the lines that are due at `now`.
    pub fn tick(&mut self, now: Instant) {
        for entry in self.reasons.values_mut() {
            let from = entry.logged.unwrap_or(entry.since);
            if entry.count > 0 && now.saturating_duration_since(from) >= self.interval {
                entry.write(now, true);
            }
        }
    }

    /// Writes every count not logged yet (the source ended or the service stops).
    pub fn finish(&mut self) {
        let now = Instant::now();
        for entry in self.reasons.values_mut() {
            if entry.count > 0 {
                entry.write(now, false);
            }
        }
    }
}

impl Pending {
    fn write(&mut self, now: Instant, in_window: bool) {
        let more = if self.logged.is_some() { " more" } else { "" };
        let times = match self.count {
            1 if more.is_empty() => "once".to_owned(),
            1 => "once more".to_owned(),
            n => format!("{n}{more} times"),
        };
        let window = if in_window {
            let from = self.logged.unwrap_or(self.since);
            format!(" in {} s", now.saturating_duration_since(from).as_secs())
        } else {
            String::new()
        };
        let last = if self.count > 1 { "the last: " } else { "" };
        tracing::warn!(
            "rejected {times}{window}, {last}{message}",
            message = self.message
        );
        self.count = 0;
        self.logged = Some(now);
    }
}

fn reason_index(reason: RejectReason) -> usize {
    RejectReason::ALL
        .iter()
        .position(|r| *r == reason)
        .unwrap_or(usize::MAX)
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

/// Why a source gave no telegram, in words, from its counters: the likely cause first.
pub fn no_telegram_cause(stats: &Stats) -> String {
    let most = stats
        .rejections()
        .max_by_key(|(_, n)| *n)
        .map(|(reason, _)| reason);
    match most {
        Some(RejectReason::WrongKey) => {
            "the frames do not decrypt with this key: the wrong decryption key (--key, \
             --key-file or SMARTY_KEY must be this meter's key from the grid operator)"
                .to_owned()
        }
        Some(RejectReason::Authentication) => {
            "the frames decrypt but their authentication tag does not verify: the wrong \
             authentication key (drop --auth-key/--aad for Luxembourg's default, or give the \
             meter's own)"
                .to_owned()
        }
        Some(RejectReason::NoKey) => {
            "the frames are encrypted and no key was given (--key, --key-file or SMARTY_KEY; \
             --format raw forwards them undecrypted)"
                .to_owned()
        }
        Some(RejectReason::Unverifiable) => {
            "the frames cannot be verified with these settings (see the warnings above)".to_owned()
        }
        Some(RejectReason::Replay) => {
            "every frame repeated an earlier frame counter (--reject-replay)".to_owned()
        }
        Some(RejectReason::Crc | RejectReason::Malformed) => {
            "the telegrams are damaged: wrong serial settings (--baud, --serial: 7E1 for DSMR \
             2.2 to 4) or a bad cable?"
                .to_owned()
        }
        Some(RejectReason::Corrupted) => "the frames are corrupted in transit".to_owned(),
        Some(RejectReason::Truncated | RejectReason::Oversize | RejectReason::Stalled) => {
            "the frames were cut short: a bad cable, wrong serial settings (--baud, --serial), \
             or --max-frame too small?"
                .to_owned()
        }
        Some(_) => "every frame or telegram was rejected (see the warnings above)".to_owned(),
        None if stats.noise_bytes > 0 => "nothing that looks like a P1 frame or telegram: is \
                                          it a P1 capture, at the right --baud and --serial?"
            .to_owned(),
        None => "no data".to_owned(),
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::Delivery;
    use crate::source::{OpenFuture, Reader};
    use smarty_p1::{Decoded, DecoderConfig, framing::FramingConfig};
    use std::collections::VecDeque;
    use std::pin::Pin;
    use std::sync::Mutex;
    use std::task::{Context, Poll};

    const TELEGRAM: &[u8] = b"/ISK5\\2M550T-1012\r\n\r\n1-0:1.8.1(000001.000*kWh)\r\n!\r\n";

    /// A live source handing out `chunks`, one per read, then staying open and silent.
    struct Chunks(Mutex<Option<VecDeque<Vec<u8>>>>);

    struct ChunkReader(VecDeque<Vec<u8>>);

    impl tokio::io::AsyncRead for ChunkReader {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            match self.0.pop_front() {
                Some(chunk) => {
                    buf.put_slice(&chunk);
                    Poll::Ready(Ok(()))
                }
                None => Poll::Pending,
            }
        }
    }

    impl std::fmt::Display for Chunks {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("chunks")
        }
    }

    impl Source for Chunks {
        fn open(&self) -> OpenFuture<'_> {
            let chunks = self.0.lock().unwrap().take().unwrap_or_default();
            Box::pin(async move { Ok(Box::new(ChunkReader(chunks)) as Reader) })
        }

        fn is_live(&self) -> bool {
            true
        }
    }

    /// A sink whose delivery takes `delay` (an output applying back-pressure).
    struct Slow {
        delay: Duration,
        telegrams: u64,
    }

    impl Sink for Slow {
        fn telegram(&mut self, _: &Decoded<'_>) -> io::Result<()> {
            self.telegrams += 1;
            Ok(())
        }

        fn deliver(&mut self) -> Delivery<'_> {
            Box::pin(async move {
                tokio::time::sleep(self.delay).await;
                Ok(())
            })
        }
    }

    /// A frame whose second half waits in the source while the output holds the pipeline
    /// back for longer than the framing gap is not taken for a stalled frame.
    #[tokio::test]
    async fn waiting_for_the_output_never_cuts_a_frame() {
        let (head, tail) = TELEGRAM.split_at(20);
        let source = Chunks(Mutex::new(Some(VecDeque::from([
            [TELEGRAM, head].concat(),
            tail.to_vec(),
        ]))));
        let mut decoder = Decoder::new(
            DecoderConfig::default().with_framing(FramingConfig::default().with_gap_ms(20)),
        );
        let mut sink = Slow {
            delay: Duration::from_millis(100),
            telegrams: 0,
        };
        let options = Options {
            limit: Some(2),
            silence: None,
        };
        let mut log = RejectionLog::new(REJECTION_LOG_INTERVAL, true, Settings::Flags);
        // A cut frame leaves the pipeline waiting for a second telegram that never comes.
        let end = tokio::time::timeout(
            Duration::from_secs(10),
            run(&source, &mut decoder, &mut sink, options, &mut log),
        )
        .await;
        assert!(
            end.is_ok(),
            "the second telegram was lost: {:?}",
            decoder.stats()
        );
        assert_eq!(end.unwrap().unwrap(), End::Limit);
        assert_eq!(sink.telegrams, 2);
        assert_eq!(decoder.stats().rejected_total(), 0);
    }

    #[test]
    fn rejections_make_one_line_per_reason_and_interval() {
        let mut log = RejectionLog::new(Duration::from_secs(60), true, Settings::Flags);
        let start = Instant::now();
        let wrong = Rejection::Decrypt(DecryptError::WrongKey);
        for i in 0..1000 {
            log.record(&wrong, start + Duration::from_millis(i));
        }
        let entry = &log.reasons[&reason_index(RejectReason::WrongKey)];
        assert_eq!(entry.logged, Some(start), "the first at once");
        assert_eq!(entry.count, 999, "the rest counted");
        log.tick(start + Duration::from_secs(30));
        assert_eq!(
            log.reasons[&reason_index(RejectReason::WrongKey)].count,
            999
        );
        log.tick(start + Duration::from_secs(61));
        let entry = &log.reasons[&reason_index(RejectReason::WrongKey)];
        assert_eq!(entry.count, 0, "written after the interval");
        // Within the next interval nothing is logged at once.
        log.record(&wrong, start + Duration::from_secs(62));
        assert_eq!(log.reasons[&reason_index(RejectReason::WrongKey)].count, 1);
    }

    #[test]
    fn files_log_each_reason_once_at_the_end() {
        let mut log = RejectionLog::new(Duration::from_secs(60), false, Settings::Flags);
        let now = Instant::now();
        log.record(&Rejection::Decrypt(DecryptError::WrongKey), now);
        log.record(&Rejection::Decrypt(DecryptError::WrongKey), now);
        log.tick(now + Duration::from_secs(1));
        let entry = &log.reasons[&reason_index(RejectReason::WrongKey)];
        assert_eq!((entry.count, entry.logged), (2, None));
        log.finish();
        assert_eq!(log.reasons[&reason_index(RejectReason::WrongKey)].count, 0);
    }
}
