//! `smarty import`: backfills the store from a capture of frames or a `read --format json`
//! file.

use std::io::{self, IsTerminal};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use smarty_p1::{Decoder, RejectReason};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader, ReadBuf};

use super::reading::{MbusReading, Reading};
use super::{Store, StoreConfig, StoreError, Writer};
use crate::cli::ImportArgs;
use crate::model::time::local_rfc3339;
use crate::source::HexOrBinary;

/// Readings committed at once at most (a day at 10 s).
const BATCH: usize = 8640;

/// How far ahead of this machine's clock a reading may lie before it counts as in the future
/// (a meter's clock may run a little ahead).
const FUTURE_TOLERANCE_S: i64 = 300;

/// Counts the bytes read into the progress bar.
struct Counting<R> {
    inner: R,
    progress: ProgressBar,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counting<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.progress.inc((buf.filled().len() - before) as u64);
        polled
    }
}

/// The import in progress.
struct Import {
    writer: Writer,
    meter: Arc<str>,
    retention_s: Option<i64>,
    progress: ProgressBar,
    /// Telegrams (or JSON lines) read.
    telegrams: u64,
    /// Telegrams without a time of their own (not imported).
    timeless: u64,
    /// JSON lines that are not telegrams.
    bad_lines: u64,
    first: Option<i64>,
    last: Option<i64>,
    /// The latest reading time committed.
    committed_until: Option<i64>,
    /// Readings later than the clock of this machine (beyond [`FUTURE_TOLERANCE_S`]).
    future: u64,
}

impl Import {
    /// Adds the readings of one telegram; `timed` tells whether it carries its own time.
    fn add(&mut self, reading: Option<Reading>, mbus: Vec<MbusReading>, timed: bool) -> Result<()> {
        self.telegrams += 1;
        match reading {
            Some(reading) => {
                if reading.ts > jiff::Timestamp::now().as_second() + FUTURE_TOLERANCE_S {
                    self.future += 1;
                }
                self.first = Some(self.first.map_or(reading.ts, |f| f.min(reading.ts)));
                self.last = Some(self.last.map_or(reading.ts, |l| l.max(reading.ts)));
                self.writer.push(reading);
            }
            None if !timed => self.timeless += 1,
            None => {}
        }
        for m in mbus {
            self.writer.push_mbus(m);
        }
        if self.writer.buffered() >= BATCH || self.writer.due() {
            self.commit()?;
        }
        Ok(())
    }

    /// Commits the buffer, then prunes raw readings past the retention (never the period of
    /// the last reading committed, which the next batch may continue).
    fn commit(&mut self) -> Result<()> {
        self.writer.flush()?;
        self.committed_until = self.last;
        if let (Some(retention), Some(last)) = (self.retention_s, self.committed_until) {
            let now = jiff::Timestamp::now().as_second();
            self.writer.prune(now.min(last + retention))?;
        }
        let totals = self.writer.totals();
        self.progress.set_message(format!(
            "{} readings imported, {} already stored",
            totals.readings, totals.duplicates
        ));
        Ok(())
    }
}

/// Runs `smarty import`.
///
/// # Errors
/// No store, an unreadable file, a wrong or missing key, or store errors.
pub async fn run(args: ImportArgs) -> Result<()> {
    let started = Instant::now();
    let config = StoreConfig::from_args(&args.store)?;
    // One process writes a store at a time: a store that the service writes is refused
    // (docs/storage.md, "One writer").
    let store = match Store::open(&config) {
        Ok(store) => store,
        Err(e @ StoreError::Locked { .. }) => bail!(
            "{e}. smarty import does not write beside it: stop that process, import, then \
             start it again (its readings of the meantime arrive when it reconnects to the \
             meter), or import into another file with --db"
        ),
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot open the store {}", config.path.display()));
        }
    };
    let stdin = args.file.as_os_str() == "-";
    let (input, total): (Box<dyn AsyncRead + Unpin + Send>, Option<u64>) = if stdin {
        (Box::new(tokio::io::stdin()), None)
    } else {
        let file = tokio::fs::File::open(&args.file)
            .await
            .with_context(|| format!("cannot open {}", args.file.display()))?;
        let len = file.metadata().await.ok().map(|m| m.len());
        (Box::new(file), len)
    };
    let progress = match total {
        Some(len) => ProgressBar::new(len).with_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{wide_bar}] {bytes}/{total_bytes} ETA {eta} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{elapsed_precise} {spinner} {bytes} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    if args.quiet || !io::stderr().is_terminal() {
        progress.set_draw_target(ProgressDrawTarget::hidden());
    }
    let mut input = BufReader::with_capacity(
        64 * 1024,
        Counting {
            inner: input,
            progress: progress.clone(),
        },
    );
    let head = input.fill_buf().await.context("cannot read the input")?;
    let json = head.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let mut import = Import {
        writer: store.writer()?,
        meter: Arc::from(args.meter.as_str()),
        retention_s: config.retention_s(),
        progress: progress.clone(),
        telegrams: 0,
        timeless: 0,
        bad_lines: 0,
        first: None,
        last: None,
        committed_until: None,
        future: 0,
    };
    let rejected = if json {
        json_lines(input, &mut import).await?;
        import.bad_lines
    } else {
        frames(input, &args, &mut import).await?
    };
    import.commit()?;
    progress.finish_and_clear();
    let totals = import.writer.totals();
    let zone = crate::model::time::meter_zone();
    let period = match (import.first, import.last) {
        (Some(first), Some(last)) => format!(
            "from {} to {}",
            local_rfc3339(first, &zone),
            local_rfc3339(last, &zone)
        ),
        _ => "nothing".to_owned(),
    };
    let mut summary = format!(
        "smarty import: {} telegram{} imported, {} skipped as already stored, {} rejected {}",
        totals.readings,
        if totals.readings == 1 { "" } else { "s" },
        totals.duplicates,
        rejected,
        if json { "lines" } else { "frames" },
    );
    if import.timeless > 0 {
        summary.push_str(&format!(
            ", {} without a time of their own",
            import.timeless
        ));
    }
    if totals.mbus > 0 {
        summary.push_str(&format!(", {} M-Bus readings", totals.mbus));
    }
    crate::output::note(format_args!(
        "{summary}; {period}; into {} in {:.1} s",
        store.path().display(),
        started.elapsed().as_secs_f64()
    ));
    if import.future > 0 {
        let last = import.last.map_or_else(String::new, |t| {
            format!(", up to {}", local_rfc3339(t, &zone))
        });
        tracing::warn!(
            "{} reading{} lie in the future{last}, later than this machine's clock: the \
             capture's clock is ahead, or it was simulated without --start (`smarty simulate` \
             starts at the current time; `--start DATE` puts a capture in the past). They are \
             stored anyway and count in the days and periods they name",
            import.future,
            if import.future == 1 { "" } else { "s" },
        );
    }
    Ok(())
}

/// Reads JSON lines (`smarty read --format json`).
async fn json_lines<R: AsyncRead + Unpin>(input: BufReader<R>, import: &mut Import) -> Result<()> {
    let mut lines = input.lines();
    let mut number = 0u64;
    while let Some(line) = lines.next_line().await.context("cannot read the input")? {
        number += 1;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<serde_json::Value>(&line) {
            Ok(value) if value.get("objects").is_some() => {
                let (reading, mbus) = Reading::from_json(&import.meter, &value, None);
                let timed = value.get("timestamp").is_some_and(|t| !t.is_null());
                import.add(reading, mbus, timed)?;
            }
            Ok(_) | Err(_) => {
                import.bad_lines += 1;
                if import.bad_lines <= 3 {
                    import.progress.suspend(|| {
                        tracing::warn!("line {number}: not a telegram of smarty read --format json")
                    });
                }
            }
        }
    }
    Ok(())
}

/// Reads frames (binary, or the hex lines of `read --format raw`); returns the frames
/// rejected.
async fn frames<R: AsyncRead + Unpin>(
    input: BufReader<R>,
    args: &ImportArgs,
    import: &mut Import,
) -> Result<u64> {
    let (config, _) = crate::key::decoder_config(&args.key)?;
    let mut decoder = Decoder::new(config);
    let mut input = HexOrBinary::new(input);
    let mut buf = vec![0u8; 64 * 1024];
    let mut reported = 0u32;
    let mut handle = |decoder: &mut Decoder, at_end: bool, import: &mut Import| -> Result<()> {
        loop {
            let result = if at_end {
                decoder.finish()
            } else {
                decoder.next()
            };
            match result {
                None => return Ok(()),
                Some(Ok(decoded)) => {
                    let telegram = &decoded.telegram;
                    let (reading, mbus) = Reading::from_telegram(&import.meter, telegram, None);
                    import.add(reading, mbus, telegram.timestamp().is_some())?;
                }
                Some(Err(rejection)) => {
                    reported += 1;
                    if reported <= 3 {
                        import.progress.suspend(|| {
                            tracing::warn!(
                                "rejected: {}",
                                crate::key::explain(&rejection, crate::key::Settings::Flags)
                            );
                        });
                    }
                }
            }
        }
    };
    loop {
        let n = input
            .read(&mut buf)
            .await
            .context("cannot read the input")?;
        if n == 0 {
            break;
        }
        decoder.push(&buf[..n]);
        handle(&mut decoder, false, import)?;
    }
    handle(&mut decoder, true, import)?;
    let stats = decoder.stats();
    let rejected: u64 = stats.rejections().map(|(_, n)| n).sum();
    if stats.telegrams == 0 && stats.rejected(RejectReason::NoKey) > 0 {
        bail!(
            "the capture holds encrypted frames: give the key with --key-file, --key or SMARTY_KEY"
        );
    }
    if stats.telegrams == 0 && stats.frames + stats.plain_telegrams == 0 {
        bail!("no frame or telegram found in {}", args.file.display());
    }
    Ok(rejected)
}
