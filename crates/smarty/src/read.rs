//! `smarty read`: one source, decoded to stdout, a summary on exit.

use std::io::Write;
use std::time::Instant;

use anyhow::Result;
use smarty_p1::{Decoder, framing::FramingConfig};

use crate::cli::{Format, ReadArgs};
use crate::output::{self, NullSink};
use crate::pipeline::{self, End};
use crate::{key, source};

/// Runs `smarty read`.
///
/// # Errors
/// Bad key or source arguments, or a finite source that cannot be read.
pub async fn run(args: ReadArgs) -> Result<()> {
    let (mut config, origin) = key::decoder_config(&args.key)?;
    config.framing = FramingConfig {
        max_frame_len: args.max_frame,
        gap_ms: args.frame_gap.as_millis() as u64,
    };
    let has_key = config.key.is_some();
    let source = source::from_spec(&args.source, &args.serial)?;
    if let Some(origin) = &origin {
        tracing::debug!("decryption key from {origin}");
    }
    if args.key.no_verify_tag {
        tracing::warn!(
            "tolerant mode: telegrams whose GCM tag fails are accepted when their CRC is valid"
        );
    }
    let stdout: Box<dyn Write + Send> = Box::new(std::io::stdout());
    let mut sink = if args.quiet {
        Box::new(NullSink) as Box<dyn output::Sink>
    } else {
        output::for_format(args.format, stdout)
    };
    let mut decoder = Decoder::new(config);
    let started = Instant::now();
    let end = tokio::select! {
        end = pipeline::run(source.as_ref(), &mut decoder, sink.as_mut(), args.count) => Some(end?),
        _ = tokio::signal::ctrl_c() => None,
    };
    let stats = decoder.stats();
    let mut summary = pipeline::summary(stats, started.elapsed());
    if args.format == Format::Raw && !has_key {
        summary = format!(
            "smarty: {} frames and {} plaintext telegrams forwarded without decryption in {:.1} s",
            stats.frames,
            stats.plain_telegrams,
            started.elapsed().as_secs_f64()
        );
    }
    if end != Some(End::OutputClosed) {
        eprintln!("{summary}");
    }
    Ok(())
}
