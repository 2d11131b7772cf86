//! `smarty read`: one source, decoded to stdout, a summary on exit.

use std::io::Write;
use std::time::Instant;

use anyhow::{Result, bail};
use smarty_p1::{Decoder, framing::FramingConfig};

use crate::cli::{Format, ReadArgs};
use crate::output::{self, NullSink, note};
use crate::pipeline::{self, End, Options, RejectionLog};
use crate::{key, source};

/// Runs `smarty read`.
///
/// # Errors
/// Bad key or source arguments, a finite source that cannot be read, or a source that gave
/// no telegram at all (the error names the likely cause: the wrong key, the wrong
/// authentication key, no P1 data…).
pub async fn run(args: ReadArgs) -> Result<()> {
    let (mut config, origin) = key::decoder_config(&args.key)?;
    config.framing = FramingConfig::default()
        .with_max_frame_len(args.max_frame)
        .with_gap_ms(u64::try_from(args.frame_gap.as_millis()).unwrap_or(u64::MAX));
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
    let mut rejections = RejectionLog::for_source(source.as_ref(), key::Settings::Flags);
    let started = Instant::now();
    let options = Options {
        limit: args.count,
        silence: None,
    };
    let end = tokio::select! {
        end = pipeline::run(source.as_ref(), &mut decoder, sink.as_mut(), options, &mut rejections) => Some(end?),
        _ = tokio::signal::ctrl_c() => None,
    };
    if end == Some(End::OutputClosed) {
        // `| head`: the reader has what it wanted; nothing more to say.
        return Ok(());
    }
    rejections.finish();
    let stats = decoder.stats();
    let forwarding = args.format == Format::Raw && !has_key;
    if forwarding {
        note(format_args!(
            "smarty: {} frames and {} plaintext telegrams forwarded without decryption in {:.1} s",
            stats.frames,
            stats.plain_telegrams,
            started.elapsed().as_secs_f64()
        ));
        if stats.frames + stats.plain_telegrams == 0 {
            bail!(
                "{source}: no frame or telegram: {}",
                pipeline::no_telegram_cause(stats)
            );
        }
        return Ok(());
    }
    note(format_args!(
        "{}",
        pipeline::summary(stats, started.elapsed())
    ));
    if stats.telegrams == 0 {
        bail!(
            "{source}: no telegram: {}",
            pipeline::no_telegram_cause(stats)
        );
    }
    Ok(())
}
