//! # smarty-p1
//!
//! Reads what the P1 port of a smart electricity meter sends: Luxembourg's encrypted
//! "Smarty" frames (Sagemcom T210-D, DLMS general-glo-ciphering with AES-128-GCM) and plain
//! DSMR 2.2–5 / e-MUCS telegrams.
//!
//! The crate is `no_std` + `alloc` and does no I/O, so it runs on a microcontroller dongle as
//! well as in the `smarty` gateway. Its parts, in the order bytes flow:
//!
//! 1. [`framing::FrameDecoder`]: bytes in any chunks → encrypted frames and plaintext
//!    telegrams, resynchronising after noise and cut frames;
//! 2. [`Decryptor`]: AES-128-GCM with the 12-byte tag and the Luxembourg AAD by default;
//! 3. [`parse`]: the telegram, every line, with CRC16/ARC check;
//! 4. [`registry`]: standard names, units and formats of OBIS codes;
//! 5. [`Readings`]: typed answers to the common questions (energy, power, per phase, gas…);
//! 6. [`Decoder`]: all of the above in one, with counters. A meter's telegrams keep their
//!    lines and only change digits, so the decoder reads a telegram that has the shape of the
//!    one before from that one's layout: one comparison of the two, 16 bytes at a time, instead
//!    of reading every line (the result is the same; [`DecoderConfig::reuse_layout`]).
//!
//! [`hex`] reads and writes the hex text that keys, AADs and frame captures come in.
//!
//! Errors are typed and say what is wrong with the data, never which option of a program to
//! change: [`DecryptError::Authentication`] carries an [`AadHint`] with the AAD that does
//! verify, for the program to phrase its advice. Public enums and configuration structs are
//! `#[non_exhaustive]` (configurations are built with `default()`/`new()` and `with_…`
//! methods), so a new error, setting or counter is not a breaking change. The crate has no
//! `unsafe` code.
//!
//! The real Luxembourg frame of the NEXXTLAB test meter (in `tests/data`, see its manifest):
//!
//! ```
//! use smarty_p1::{Decoder, DecoderConfig, Key};
//! let hex = include_str!("../tests/data/encrypted/nexxtlab_lux_t210d_fc0005a8e3.hex");
//! let frame = smarty_p1::hex::decode(hex).unwrap();
//! let key: Key = "D491470F47126332B07D1923B3504188".parse().unwrap();
//! let mut decoder = Decoder::new(DecoderConfig::new(key));
//! decoder.push(&frame);
//! let decoded = decoder.next().unwrap().unwrap();
//! let readings = decoded.telegram.readings();
//! assert_eq!(readings.meter_id.as_deref(), Some("SAG1030700114004"));
//! assert_eq!(readings.energy_import_kwh.unwrap().to_string(), "6.695");
//! ```

#![no_std]
#![warn(missing_docs, clippy::exhaustive_enums, clippy::exhaustive_structs)]
#![forbid(unsafe_code)]

extern crate alloc;

// The README's example runs as a doctest too.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod crc;
mod crypto;
mod decoder;
mod error;
mod frame;
pub mod framing;
pub mod hex;
mod line;
mod obis;
mod readings;
pub mod registry;
mod telegram;
mod value;

pub use crate::crc::crc16_arc;
pub use crate::crypto::{Aad, Authenticity, Decryptor, Key, LUXEMBOURG_AUTH_KEY, encrypt_frame};
pub use crate::decoder::{
    Decoded, Decoder, DecoderConfig, FrameInfo, RejectReason, Rejection, Stats,
};
pub use crate::error::{AadHint, DecryptError, HexError, KeyError, TelegramError, ValueError};
pub use crate::frame::{
    EncryptedFrame, FrameHeader, HeaderCheck, NotAFrame, ReplayGuard, SECURITY_CONTROL,
    SYSTEM_TITLE_LEN, TAG_LEN,
};
pub use crate::obis::Obis;
pub use crate::readings::{MbusReading, Phases, Readings};
pub use crate::telegram::{
    CrcStatus, DataObject, FailureEvent, Groups, HistoryEntry, Name, ParseOptions, Telegram, Value,
    crc_status, parse, parse_with,
};
pub use crate::value::{Decimal, OctetString, Quantity, Timestamp};
