//! CRC16/ARC of P1 telegrams (DSMR 5.0.2 §6.2, LU113 §3.2.2).
//!
//! Polynomial x¹⁶ + x¹⁵ + x² + 1 (0x8005) processed LSB first, initial value 0, no final XOR,
//! computed over every byte from `/` through `!`. Computed by the `crc` crate.

use crc::{CRC_16_ARC, Crc, Table};

static CRC16_ARC: Crc<u16, Table<16>> = Crc::<u16, Table<16>>::new(&CRC_16_ARC);

/// CRC16/ARC of `bytes`.
///
/// # Example
/// ```
/// assert_eq!(smarty_p1::crc16_arc(b"123456789"), 0xBB3D);
/// ```
pub fn crc16_arc(bytes: &[u8]) -> u16 {
    CRC16_ARC.checksum(bytes)
}
