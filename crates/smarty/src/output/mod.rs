//! Sinks: where decoded telegrams go.
//!
//! Every output format implements [`Sink`]; the pipeline hands each accepted telegram (and
//! each frame it could not decrypt for lack of a key) to every sink without knowing which.

pub mod json;
mod raw;
mod text;
pub mod time;

use std::io::{self, Write};

use smarty_p1::Decoded;

use crate::cli::Format;

/// Receives what the pipeline decodes.
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
