//! `smarty simulate`: a virtual Smarty meter.

mod fleet;
pub(crate) mod household;
mod link;
pub(crate) mod telegram;

use std::io::{self, BufWriter};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use jiff::{SignedDuration, Zoned};
use rand::Rng;
use smarty_p1::{Aad, Key};

#[cfg(unix)]
pub use link::PtyLink;
pub use link::{Link, TcpLink, WriterLink};

use crate::cli::{MeterArgs, SimulateArgs};
use crate::key;
pub use household::Household;
use telegram::Identity;

/// A configured virtual meter.
pub struct Meter {
    args: MeterArgs,
    key: Option<Key>,
    aad: Aad,
    house: Household,
    identity: Identity,
    system_title: [u8; 8],
    frame_counter: u32,
    /// The simulated time of the last frame.
    last: Option<jiff::Timestamp>,
}

/// The key the meter encrypts with, and whether it was generated.
pub struct MeterKey {
    /// The key (`None` with `--plain`).
    pub key: Option<Key>,
    /// `true` when no key was given and one was generated.
    pub generated: bool,
}

impl Meter {
    /// Builds the meter from its options; generates a key when none is given.
    ///
    /// # Errors
    /// A malformed key or authentication key.
    pub fn new(args: &MeterArgs) -> Result<(Self, MeterKey)> {
        let mut rng = rand::rng();
        let seed = args.seed.unwrap_or_else(|| rng.random());
        let (key, generated) = if args.plain {
            (None, false)
        } else {
            match key::load_key(args.key.as_deref(), args.key_file.as_deref())? {
                Some((key, _)) => (Some(key), false),
                None => (Some(Key::from_bytes(rng.random())), true),
            }
        };
        let aad = key::load_aad(args.auth_key.as_deref(), None, key::Settings::Flags)?;
        let serial = seed % 1_000_000;
        let identity = Identity {
            header: "Lux5\\253663629_D".into(),
            meter_id: format!("SAG10307001{:05}", serial % 100_000),
            gas_id: format!("FLO18237{:07}", serial * 7 % 10_000_000),
            water_id: format!("ELS35358{:07}", serial * 13 % 10_000_000),
        };
        let mut system_title = *b"SAGgp\0\0\0";
        system_title[5..].copy_from_slice(&(serial as u32).to_be_bytes()[1..]);
        let frame_counter = args
            .frame_counter
            .unwrap_or_else(|| rng.random_range(1_000..5_000_000));
        let meter = Meter::build(args, key.clone(), aad, seed, identity, system_title);
        Ok((
            Meter {
                frame_counter,
                ..meter
            },
            MeterKey { key, generated },
        ))
    }

    /// A meter of a fleet (`simulate --keys`): its system title, key and authentication key
    /// from the keys file; its household seeded by its system title (and `args.seed`), so that
    /// it is the same household in every run; its meter id (`0-0:42.0.0`) made of its system
    /// title, unique in the fleet.
    pub fn of_fleet(args: &MeterArgs, keys: &smarty_fleet::keys_csv::MeterKeys) -> Self {
        let title = keys.system_title;
        let title_number = u64::from_be_bytes(title);
        let seed = title_number ^ args.seed.unwrap_or(0);
        let tail = title_number & 0xFF_FFFF_FFFF;
        let identity = Identity {
            header: "Lux5\\253663629_D".into(),
            meter_id: format!("SAG{:013}", tail % 10_000_000_000_000),
            gas_id: format!("FLO18237{:07}", tail * 7 % 10_000_000),
            water_id: format!("ELS35358{:07}", tail * 13 % 10_000_000),
        };
        let aad = Aad::AuthKey(*keys.auth_key_or_default().as_bytes());
        Meter::build(args, Some(keys.key.clone()), aad, seed, identity, title)
    }

    fn build(
        args: &MeterArgs,
        key: Option<Key>,
        aad: Aad,
        seed: u64,
        identity: Identity,
        system_title: [u8; 8],
    ) -> Self {
        Meter {
            args: args.clone(),
            key,
            aad,
            house: Household::new(seed, args.solar_kwp, args.gas, args.water),
            identity,
            system_title,
            frame_counter: 0,
            last: None,
        }
    }

    /// Sets the frame counter of the next frame.
    pub fn set_frame_counter(&mut self, frame_counter: u32) {
        self.frame_counter = frame_counter;
    }

    /// Its system title.
    pub fn system_title(&self) -> &[u8; 8] {
        &self.system_title
    }

    /// The household behind it: its energy registers.
    pub fn household_mut(&mut self) -> &mut Household {
        &mut self.house
    }

    /// The meter id it sends in `0-0:42.0.0`.
    pub fn meter_id(&self) -> &str {
        &self.identity.meter_id
    }

    /// Advances the household to `now` (from the previous frame's time, or by one interval
    /// for the first frame) and returns the frame (or plaintext telegram).
    pub fn next_frame(&mut self, now: &Zoned) -> Vec<u8> {
        let step = match self.last {
            Some(last) if now.timestamp() > last => {
                now.timestamp().duration_since(last).as_secs_f64()
            }
            _ => self.args.interval.as_secs_f64(),
        };
        self.last = Some(now.timestamp());
        self.house.step(now, step);
        let plaintext = telegram::write(&self.house, &self.identity, self.args.firmware, now);
        match &self.key {
            None => plaintext,
            Some(key) => {
                let frame = smarty_p1::encrypt_frame(
                    key,
                    &self.aad,
                    self.system_title,
                    self.frame_counter,
                    &plaintext,
                );
                self.frame_counter = self.frame_counter.wrapping_add(1);
                frame
            }
        }
    }

    /// Sends frames to `link` every interval until `count` frames are sent or `stop`
    /// receives anything. With `fast`, sends without waiting (simulated time still advances).
    ///
    /// # Errors
    /// A write error on a file or stdout.
    pub fn run(&mut self, link: &mut dyn Link, fast: bool, stop: &Receiver<()>) -> Result<u64> {
        let interval = self.args.interval;
        let step = SignedDuration::try_from(interval).unwrap_or(SignedDuration::from_secs(10));
        let zone = jiff::tz::TimeZone::get(smarty_model::time::METER_ZONE)
            .unwrap_or(jiff::tz::TimeZone::UTC);
        let mut now = self
            .args
            .start
            .unwrap_or_else(jiff::Timestamp::now)
            .to_zoned(zone);
        let started = Instant::now();
        let mut sent = 0u64;
        while self.args.count.is_none_or(|count| sent < count) {
            let frame = self.next_frame(&now);
            match link.send(&frame) {
                Ok(()) => {}
                Err(e) if link.is_fatal() => {
                    return Err(e).with_context(|| format!("cannot write to {}", link.describe()));
                }
                Err(e) => tracing::debug!("frame not delivered: {e}"),
            }
            sent += 1;
            now = now.checked_add(step).unwrap_or(now);
            if !fast {
                let due = started + interval * (sent as u32);
                let wait = due.saturating_duration_since(Instant::now());
                match stop.recv_timeout(wait) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => break,
                }
            } else if stop.try_recv().is_ok() {
                break;
            }
        }
        Ok(sent)
    }
}

/// Runs `smarty simulate`.
///
/// # Errors
/// Bad options, or a link that cannot be opened or written.
pub async fn run(args: SimulateArgs) -> Result<()> {
    if args.meters.is_some() || args.keys.is_some() {
        return fleet::run(args).await;
    }
    let (mut meter, key) = Meter::new(&args.meter)?;
    let (mut link, fast): (Box<dyn Link>, bool) = if let Some(address) = &args.listen {
        (Box::new(TcpLink::listen(address)?), args.fast)
    } else if let Some(output) = &args.output {
        if output == "-" {
            let out = BufWriter::new(io::stdout());
            (
                Box::new(WriterLink::new(Box::new(out), "standard output")),
                args.fast,
            )
        } else {
            let file =
                std::fs::File::create(output).with_context(|| format!("cannot create {output}"))?;
            (
                Box::new(WriterLink::new(Box::new(BufWriter::new(file)), output)),
                true,
            )
        }
    } else {
        (pty_link(args.link.as_deref())?, args.fast)
    };
    let what = if args.meter.plain {
        "plaintext"
    } else {
        "encrypted"
    };
    crate::output::note(format_args!(
        "virtual Smarty meter {} sending {what} frames every {:?} to {}",
        meter.meter_id(),
        args.meter.interval,
        link.describe()
    ));
    if let (Some(key), true) = (&key.key, key.generated) {
        crate::output::note(format_args!(
            "generated key (read with --key): {}",
            smarty_p1::hex::upper(key.as_bytes())
        ));
    }
    let (stop_tx, stop_rx) = std::sync::mpsc::channel();
    let worker = tokio::task::spawn_blocking(move || {
        let result = meter.run(link.as_mut(), fast, &stop_rx);
        drop(link);
        result
    });
    tokio::pin!(worker);
    let sent = tokio::select! {
        result = &mut worker => result??,
        _ = tokio::signal::ctrl_c() => {
            let _ = stop_tx.send(());
            worker.await??
        }
    };
    crate::output::note(format_args!("smarty simulate: {sent} frames sent"));
    Ok(())
}

/// How long to wait before the first frame when a reader starts at the same moment.
pub const FIRST_FRAME_DELAY: Duration = Duration::from_millis(300);

/// The default link: a pseudo-terminal, with a symlink `link` to it.
#[cfg(unix)]
fn pty_link(link: Option<&std::path::Path>) -> Result<Box<dyn Link>> {
    let pty = PtyLink::open(link).context("cannot open a pseudo-terminal")?;
    Ok(Box::new(pty))
}

/// Systems without pseudo-terminals (Windows) send over TCP or to a file.
#[cfg(not(unix))]
fn pty_link(_link: Option<&std::path::Path>) -> Result<Box<dyn Link>> {
    anyhow::bail!(
        "this system has no pseudo-terminals: send with --listen 127.0.0.1:2001 or --output FILE"
    )
}
