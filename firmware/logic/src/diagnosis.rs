//! What the status page says is wrong, as `smarty read` says it when no telegram comes: a
//! pure function of the reader's counters, its last rejection and how long ago bytes and
//! telegrams came ([`diagnose`] of an [`Observation`], which [`crate::p1::Reader::observe`]
//! fills in).
//!
//! The core tells a wrong decryption key (nothing readable comes out) from a wrong
//! authentication key (the telegram decrypts, the GCM tag fails with the AAD in use), so the
//! page can say which of the two keys to fix.

use smarty_p1::{AadHint, RejectReason, Rejection, Stats};

use crate::p1::RejectionCounts;

/// How long after the start, or after the last byte, silence is taken as no data (ms). A
/// Smarty sends every 10 s and a DSMR 5 meter every second, so 25 s is more than two frames.
pub const SILENCE_MS: u64 = 25_000;

/// How long without an accepted telegram the last one stops counting as "working" (ms).
pub const STALE_MS: u64 = 60_000;

/// What the diagnosis looks at.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[non_exhaustive]
pub struct Observation {
    /// The decoder's counters since the start.
    pub stats: Stats,
    /// Whether a decryption key is configured.
    pub key_configured: bool,
    /// Bytes received from the P1 port since the start.
    pub bytes_received: u64,
    /// Milliseconds since reading started.
    pub running_ms: u64,
    /// Milliseconds since the last byte; `None` before the first.
    pub since_last_byte_ms: Option<u64>,
    /// Milliseconds since the last accepted telegram; `None` before the first.
    pub since_last_telegram_ms: Option<u64>,
    /// Rejections since the last accepted telegram.
    pub rejected_since_telegram: RejectionCounts,
    /// The last rejection.
    pub last_rejection: Option<Rejection>,
    /// What the last authentication failure found verifies the tag.
    pub authentication_hint: Option<AadHint>,
    /// Whether the last accepted telegram had per-phase values; `None` before the first.
    pub per_phase_values: Option<bool>,
}

/// The verdict, with the message the status page shows ([`core::fmt::Display`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Diagnosis {
    /// Telegrams arrive and are accepted.
    Working,
    /// Telegrams arrive, but without per-phase values: the meter sends the basic list.
    BasicReadout,
    /// Just started: no frame yet, but it is too early to worry.
    Waiting,
    /// Not a byte from the P1 port.
    NoData,
    /// Bytes came before, then stopped.
    DataStopped,
    /// Bytes arrive but nothing looks like a frame or telegram.
    NoFrames,
    /// Encrypted frames arrive but no key is configured.
    NoKey,
    /// The frames do not decrypt with the key: the decryption key is wrong.
    WrongKey,
    /// The frames decrypt but the GCM tag does not verify: the authentication key is wrong.
    WrongAuthenticationKey {
        /// Which usual setting does verify, if any.
        hint: AadHint,
    },
    /// Telegrams fail their CRC or are malformed.
    Damaged,
    /// Both the GCM tag and the telegram's CRC fail: frames are damaged on the line.
    Corrupted,
    /// Frames are cut short or overlong.
    CutShort,
    /// Frames repeat an earlier frame counter.
    Replayed,
}

impl Diagnosis {
    /// A stable snake_case code for JSON and MQTT (`wrong_key`).
    pub fn code(&self) -> &'static str {
        match self {
            Diagnosis::Working => "working",
            Diagnosis::BasicReadout => "basic_readout",
            Diagnosis::Waiting => "waiting",
            Diagnosis::NoData => "no_data",
            Diagnosis::DataStopped => "data_stopped",
            Diagnosis::NoFrames => "no_frames",
            Diagnosis::NoKey => "no_key",
            Diagnosis::WrongKey => "wrong_key",
            Diagnosis::WrongAuthenticationKey { .. } => "wrong_authentication_key",
            Diagnosis::Damaged => "damaged",
            Diagnosis::Corrupted => "corrupted",
            Diagnosis::CutShort => "cut_short",
            Diagnosis::Replayed => "replayed",
        }
    }

    /// `true` when telegrams are being accepted ([`Diagnosis::Working`],
    /// [`Diagnosis::BasicReadout`]).
    pub fn is_ok(&self) -> bool {
        matches!(self, Diagnosis::Working | Diagnosis::BasicReadout)
    }
}

impl core::fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Diagnosis::Working => "Telegrams arrive and are decoded.",
            Diagnosis::BasicReadout => {
                "Telegrams arrive, but without per-phase values (voltages, power per phase): \
                 the meter sends its basic list. Ask the grid operator for the full read-out."
            }
            Diagnosis::Waiting => "Waiting for the first telegram (a Smarty sends every 10 s).",
            Diagnosis::NoData => {
                "No data from the P1 port: check the cable and that it is in the meter's P1 \
                 socket (RJ12), and that the P1 port is enabled."
            }
            Diagnosis::DataStopped => {
                "Data from the P1 port stopped: check the cable, or whether the meter's P1 port \
                 was switched off."
            }
            Diagnosis::NoFrames => {
                "Bytes arrive but nothing that looks like a telegram: check the wiring (the P1 \
                 signal is inverted: the receive line needs inverting) and the serial settings \
                 (115200 baud 8N1)."
            }
            Diagnosis::NoKey => {
                "The meter encrypts its telegrams: enter the key from the grid operator."
            }
            Diagnosis::WrongKey => {
                "Wrong key: the frames do not decrypt with this key. Enter this meter's key as \
                 the grid operator gave it."
            }
            Diagnosis::WrongAuthenticationKey { hint } => match hint {
                AadHint::LuxembourgDefault => {
                    "Wrong authentication key: the key is right, but the frames verify with \
                     Luxembourg's default authentication key. Clear the authentication key."
                }
                AadHint::Empty | AadHint::SecurityByteOnly => {
                    "Wrong authentication key: the key is right, but the frames verify without \
                     an authentication key."
                }
                _ => {
                    "Wrong authentication key: the key is right, but the frames do not verify \
                     with this authentication key. Enter the meter's own."
                }
            },
            Diagnosis::Damaged => {
                "Telegrams arrive damaged (CRC errors): check the wiring and for electrical \
                 noise, and the serial settings (115200 baud 8N1)."
            }
            Diagnosis::Corrupted => {
                "Frames arrive corrupted: check the wiring and for electrical noise."
            }
            Diagnosis::CutShort => {
                "Frames are cut short: a loose contact or noise on the line, or wrong serial \
                 settings."
            }
            Diagnosis::Replayed => "Frames repeat an earlier frame counter.",
        })
    }
}

/// The reason among `counts` that explains the most; on a tie, the first in this order
/// (key problems before line problems: a wrong key fails every frame, while a rescan of its
/// bytes can add a stray framing rejection).
fn dominant(counts: &RejectionCounts) -> Option<RejectReason> {
    const PRIORITY: [RejectReason; 11] = [
        RejectReason::WrongKey,
        RejectReason::Authentication,
        RejectReason::NoKey,
        RejectReason::Unverifiable,
        RejectReason::Replay,
        RejectReason::Corrupted,
        RejectReason::Crc,
        RejectReason::Malformed,
        RejectReason::Truncated,
        RejectReason::Oversize,
        RejectReason::Stalled,
    ];
    let mut best: Option<(RejectReason, u64)> = None;
    for reason in PRIORITY {
        let n = counts.get(reason);
        if n > 0 && best.is_none_or(|(_, m)| n > m) {
            best = Some((reason, n));
        }
    }
    best.map(|(r, _)| r)
}

/// The diagnosis of `o`.
///
/// In order: a recent telegram means working (with the per-phase check); then the rejections
/// since the last telegram, the most frequent explaining; then silence (no data at all, or
/// data that stopped) and bytes without frames; else waiting.
///
/// # Example
/// ```
/// use smarty_dongle::diagnosis::{Diagnosis, Observation, diagnose};
/// let mut o = Observation::default();
/// o.running_ms = 60_000;
/// assert_eq!(diagnose(&o), Diagnosis::NoData);
/// assert!(diagnose(&o).to_string().contains("check the cable"));
/// ```
pub fn diagnose(o: &Observation) -> Diagnosis {
    if o.since_last_telegram_ms.is_some_and(|t| t < STALE_MS) {
        return if o.per_phase_values == Some(false) {
            Diagnosis::BasicReadout
        } else {
            Diagnosis::Working
        };
    }
    let silent = o.since_last_byte_ms.is_some_and(|t| t >= SILENCE_MS);
    if silent {
        return Diagnosis::DataStopped;
    }
    if let Some(reason) = dominant(&o.rejected_since_telegram) {
        return match reason {
            RejectReason::WrongKey => Diagnosis::WrongKey,
            RejectReason::Authentication => Diagnosis::WrongAuthenticationKey {
                hint: o.authentication_hint.unwrap_or(AadHint::Unknown),
            },
            RejectReason::NoKey => Diagnosis::NoKey,
            RejectReason::Replay => Diagnosis::Replayed,
            RejectReason::Corrupted => Diagnosis::Corrupted,
            RejectReason::Crc | RejectReason::Malformed | RejectReason::Unverifiable => {
                Diagnosis::Damaged
            }
            _ => Diagnosis::CutShort,
        };
    }
    if o.bytes_received == 0 {
        return if o.running_ms >= SILENCE_MS {
            Diagnosis::NoData
        } else {
            Diagnosis::Waiting
        };
    }
    let found = o.stats.frames + o.stats.plain_telegrams;
    if found == 0 && o.running_ms >= SILENCE_MS {
        return Diagnosis::NoFrames;
    }
    Diagnosis::Waiting
}
