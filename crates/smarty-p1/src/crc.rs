//! CRC16/ARC of P1 telegrams (DSMR 5.0.2 §6.2, LU113 §3.2.2).
//!
//! Polynomial x¹⁶ + x¹⁵ + x² + 1 (0x8005) processed LSB first, initial value 0, no final XOR,
//! computed over every byte from `/` through `!`. Computed by the `crc-fast` crate (carry-less
//! multiplication) on x86_64 and aarch64 hosts, by the `crc` crate's slice-by-16 tables on
//! microcontrollers; a test checks the two agree.

#[cfg(any(
    test,
    not(all(
        any(target_arch = "x86_64", target_arch = "aarch64"),
        not(target_os = "none")
    ))
))]
use crc::{CRC_16_ARC, Crc, Table};

/// The tables: the CRC on microcontrollers, and the reference the fast one is tested against.
#[cfg(any(
    test,
    not(all(
        any(target_arch = "x86_64", target_arch = "aarch64"),
        not(target_os = "none")
    ))
))]
static CRC16_ARC: Crc<u16, Table<16>> = Crc::<u16, Table<16>>::new(&CRC_16_ARC);

/// CRC16/ARC of `bytes`.
///
/// # Example
/// ```
/// assert_eq!(smarty_p1::crc16_arc(b"123456789"), 0xBB3D);
/// ```
pub fn crc16_arc(bytes: &[u8]) -> u16 {
    fast(bytes)
}

/// With carry-less multiplication (SSE/PCLMULQDQ, NEON/PMULL) where the host has it.
#[cfg(all(
    any(target_arch = "x86_64", target_arch = "aarch64"),
    not(target_os = "none")
))]
fn fast(bytes: &[u8]) -> u16 {
    // A CRC-16 in the low 16 bits of the u64.
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc16Arc, bytes) as u16
}

/// Slice-by-16 tables elsewhere (microcontrollers).
#[cfg(not(all(
    any(target_arch = "x86_64", target_arch = "aarch64"),
    not(target_os = "none")
)))]
fn fast(bytes: &[u8]) -> u16 {
    CRC16_ARC.checksum(bytes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_fast_crc_is_the_table_crc() {
        let mut bytes = alloc::vec::Vec::new();
        for len in 0..600u32 {
            assert_eq!(
                super::fast(&bytes),
                super::CRC16_ARC.checksum(&bytes),
                "{len} bytes"
            );
            bytes.push((len.wrapping_mul(2_654_435_761) >> 13) as u8);
        }
    }
}
