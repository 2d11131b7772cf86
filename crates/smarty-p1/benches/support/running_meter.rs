//! The telegrams of a running meter, made from one corpus telegram: the benchmarks decode a
//! stream in which values change from telegram to telegram, as a meter's do, not the same
//! telegram again and again. Shared by `benches/decode.rs` and `examples/decode_loop.rs`.

/// The `i`-th telegram after `plaintext` (`i` = 0: `plaintext` itself): in every value group
/// the last three digits of the number are replaced (`(000006.695*kWh)` → `(000006.` + three
/// digits from `i` and the line + `*kWh)`), the clock's seconds advance, and the CRC is written
/// again. The lines, their lengths and their codes stay, as a meter's do.
pub fn telegram(plaintext: &[u8], i: u32) -> Vec<u8> {
    let mut out = plaintext.to_vec();
    if i == 0 {
        return out;
    }
    let mut line_start = 0;
    let mut line_no = 0u32;
    while line_start < out.len() {
        let line_end = out[line_start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(out.len(), |p| line_start + p);
        let line = &mut out[line_start..line_end];
        if line.first().is_some_and(u8::is_ascii_digit) {
            change_values(line, i, line_no);
        }
        line_start = line_end + 1;
        line_no += 1;
    }
    write_crc(&mut out);
    out
}

/// Changes the digits of the value groups of one data line.
fn change_values(line: &mut [u8], i: u32, line_no: u32) {
    let Some(open) = line.iter().position(|&b| b == b'(') else {
        return;
    };
    let mut at = open;
    while at < line.len() {
        if line[at] != b'(' {
            at += 1;
            continue;
        }
        let close = line[at..]
            .iter()
            .position(|&b| b == b')')
            .map_or(line.len(), |p| at + p);
        let group = &mut line[at + 1..close];
        let digits = group.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 12 && matches!(group.get(12), Some(b'W' | b'S')) {
            // A timestamp: the seconds.
            let s = (i * 10 + line_no) % 60;
            group[10] = b'0' + (s / 10) as u8;
            group[11] = b'0' + (s % 10) as u8;
        } else if group.contains(&b'.') || group.contains(&b'*') {
            // A number: its last three digits.
            let end = group.iter().position(|&b| b == b'*').unwrap_or(group.len());
            let mut v = (i.wrapping_mul(7919) ^ line_no.wrapping_mul(104_729)) % 1000;
            for b in group[..end]
                .iter_mut()
                .rev()
                .filter(|b| b.is_ascii_digit())
                .take(3)
            {
                *b = b'0' + (v % 10) as u8;
                v /= 10;
            }
        }
        at = close;
    }
}

/// `telegram` (one of [`telegram`]'s) as the `i`-th of a stream whose shape changes every
/// time: with `i % 16` empty lines after the header's, so that its body differs from those of
/// the 15 before it (the decoder's layout, recorded again every 8th telegram of such a stream,
/// never serves).
pub fn new_shape(mut telegram: Vec<u8>, i: u32) -> Vec<u8> {
    if !i.is_multiple_of(16) {
        let at = telegram
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("header")
            + 2;
        telegram.splice(at..at, b"\r\n".repeat((i % 16) as usize));
        write_crc(&mut telegram);
    }
    telegram
}

/// Writes the CRC16/ARC of `/` … `!` into the four hex digits after `!`.
fn write_crc(telegram: &mut [u8]) {
    let start = telegram.iter().position(|&b| b == b'/').expect("/");
    let bang = telegram
        .windows(2)
        .position(|w| w == b"\n!")
        .expect("end line")
        + 1;
    let crc = smarty_p1::crc16_arc(&telegram[start..=bang]);
    telegram[bang + 1..bang + 5].copy_from_slice(format!("{crc:04X}").as_bytes());
}
