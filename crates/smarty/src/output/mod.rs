//! Sinks: where decoded telegrams go.
//!
//! Every output format implements [`Sink`]; the pipeline hands each accepted telegram (and
//! each frame it could not decrypt for lack of a key) to every sink without knowing which.

mod json;
mod raw;
mod text;

use std::future::Future;
use std::io::{self, Write};
use std::pin::Pin;

use smarty_p1::Decoded;

use crate::cli::Format;

/// The future of [`Sink::deliver`].
pub type Delivery<'a> = Pin<Box<dyn Future<Output = io::Result<()>> + Send + 'a>>;

/// Receives what the pipeline decodes.
///
/// The pipeline hands results over synchronously ([`Sink::telegram`] and the others), then
/// awaits [`Sink::deliver`]: a sink that feeds outputs which must not lose anything (the
/// service's store and MQTT) holds what it received and sends it there, waiting while they
/// are full. The source is not read meanwhile, so a burst is slowed down, never dropped.
pub trait Sink: Send {
    /// An accepted telegram.
    ///
    /// # Errors
    /// When the output cannot be written (a closed pipe ends the pipeline quietly).
    fn telegram(&mut self, decoded: &Decoded<'_>) -> io::Result<()>;

    /// The source was opened (`connected`) or lost, with the reason.
    fn source_state(&mut self, _connected: bool, _why: Option<&str>) {}

    /// The decoder's counters, after each batch of results.
    fn counters(&mut self, _stats: &smarty_p1::Stats) {}

    /// `true` when the sink wants encrypted frames that could not be decrypted for lack of
    /// a key (they are then not reported as rejections).
    fn forwards_undecrypted(&self) -> bool {
        false
    }

    /// A complete encrypted frame that was not decrypted because no key is configured.
    ///
    /// # Errors
    /// As [`Sink::telegram`].
    fn undecrypted_frame(&mut self, _frame: &[u8]) -> io::Result<()> {
        Ok(())
    }

    /// Delivers what the sink took in since the last call. The pipeline calls it after every
    /// result, and at least once per framing gap (2 s by default) while the source is silent,
    /// so a sink may also hand on what it held back (a coalesced status).
    ///
    /// # Errors
    /// As [`Sink::telegram`].
    fn deliver(&mut self) -> Delivery<'_> {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// Writes a line to standard error; a closed or full standard error is ignored (`eprintln!`
/// would panic). For messages outside the log: summaries, the demo's banner.
pub fn note(args: std::fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr().lock(), "{args}");
}

/// Whether `error` (or one of its causes) is a write to a pipe whose reader is gone
/// (`smarty … | head`): the command then stops quietly.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        let io = cause.downcast_ref::<io::Error>().or_else(|| {
            cause
                .downcast_ref::<csv::Error>()
                .and_then(|e| match e.kind() {
                    csv::ErrorKind::Io(io) => Some(io),
                    _ => None,
                })
        });
        io.is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
            || cause
                .downcast_ref::<serde_json::Error>()
                .is_some_and(|e| e.io_error_kind() == Some(io::ErrorKind::BrokenPipe))
    })
}

/// A sink writing one of the `read` formats to `out`.
pub fn for_format(format: Format, out: Box<dyn Write + Send>) -> Box<dyn Sink> {
    match format {
        Format::Text => Box::new(text::TextSink::new(out)),
        Format::Json => Box::new(json::JsonSink::new(out)),
        Format::Dsmr => Box::new(DsmrSink { out }),
        Format::Raw => Box::new(raw::RawSink::new(out)),
    }
}

/// The decrypted telegram bytes exactly as the meter wrote them.
struct DsmrSink {
    out: Box<dyn Write + Send>,
}

impl Sink for DsmrSink {
    fn telegram(&mut self, decoded: &Decoded<'_>) -> io::Result<()> {
        self.out.write_all(decoded.telegram.raw())?;
        self.out.flush()
    }
}

/// Writes to nothing (`--quiet`).
pub struct NullSink;

impl Sink for NullSink {
    fn telegram(&mut self, _: &Decoded<'_>) -> io::Result<()> {
        Ok(())
    }
}
