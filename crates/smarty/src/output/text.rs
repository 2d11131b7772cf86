//! `--format text`: a readable block per telegram, every value with its name and unit.

use std::fmt::Write as _;
use std::io::{self, Write};

use smarty_p1::{Decoded, Value};

use super::Sink;
use smarty_model::time::rfc3339;

pub(super) struct TextSink {
    out: Box<dyn Write + Send>,
    buf: String,
}

impl TextSink {
    pub(super) fn new(out: Box<dyn Write + Send>) -> Self {
        TextSink {
            out,
            buf: String::with_capacity(4096),
        }
    }
}

impl Sink for TextSink {
    fn telegram(&mut self, decoded: &Decoded<'_>) -> io::Result<()> {
        self.buf.clear();
        render(decoded, &mut self.buf);
        self.out.write_all(self.buf.as_bytes())?;
        self.out.flush()
    }
}

/// Renders one telegram as text.
pub fn render(decoded: &Decoded<'_>, out: &mut String) {
    let t = &decoded.telegram;
    let time = t
        .timestamp()
        .map_or_else(|| "(no time)".to_owned(), |ts| rfc3339(&ts));
    let _ = write!(out, "{time}  /{}", t.header_str());
    if let Some(id) = t.meter_id() {
        let _ = write!(out, "  meter {id}");
    }
    match &decoded.frame {
        Some(f) if f.authenticated => {
            let _ = write!(out, "  frame {} (tag verified)", f.frame_counter);
        }
        Some(f) => {
            let _ = write!(
                out,
                "  frame {} (NOT authenticated: tag not verified, CRC ok)",
                f.frame_counter
            );
        }
        None => out.push_str("  plaintext"),
    }
    let _ = writeln!(out, "  CRC {}", t.crc().as_str());
    for object in t.objects() {
        let value = object.value();
        let name = t
            .name_of_value(object, &value)
            .map_or_else(|| "(unknown)".to_owned(), |n| n.to_string());
        let marker = if object.is_understood() { ' ' } else { '?' };
        let _ = write!(out, " {marker}{:<12} {:<32} ", object.code, name);
        let unit_expected = object.def.is_some_and(|d| d.unit.is_some());
        let _ = write_value(&value, unit_expected, out);
        out.push('\n');
    }
    for line in t.unknown_lines() {
        if !line.first().is_some_and(u8::is_ascii_digit) {
            let _ = writeln!(out, " ?{:<12} {}", "", String::from_utf8_lossy(line));
        }
    }
    out.push('\n');
}

fn write_value(value: &Value<'_>, unit_expected: bool, out: &mut String) -> std::fmt::Result {
    match *value {
        Value::Empty => out.push_str("(empty)"),
        Value::Number(q) => {
            write!(out, "{q}")?;
            if q.unit.is_none() && unit_expected {
                out.push_str("  (no unit sent)");
            }
        }
        Value::Text(t) => write!(out, "{t}")?,
        Value::OctetString(s) if s.is_empty() => out.push_str("\"\""),
        Value::OctetString(s) => match s.text() {
            Some(text) => write!(out, "{text:?}")?,
            None => write!(out, "0x{}", s.hex())?,
        },
        Value::Timestamp(Some(t)) => out.push_str(&rfc3339(&t)),
        Value::Timestamp(None) => out.push_str("(no timestamp)"),
        Value::TimedNumber { time, quantity } => {
            write!(out, "{quantity}")?;
            match time {
                Some(t) => write!(out, " at {}", rfc3339(&t))?,
                None => out.push_str(" (no timestamp)"),
            }
        }
        Value::Numbers(_) => {
            let parts: Vec<String> = value.numbers().map(|q| q.to_string()).collect();
            out.push_str(&parts.join(", "));
        }
        Value::FailureLog(_) => {
            let events: Vec<String> = value
                .failure_events()
                .map(|e| {
                    let end = e.end.map_or_else(|| "?".to_owned(), |t| rfc3339(&t));
                    format!("{} s ending {end}", e.duration.value)
                })
                .collect();
            if events.is_empty() {
                out.push_str("(no failures logged)");
            } else {
                out.push_str(&events.join("; "));
            }
        }
        Value::History(_) => {
            let entries: Vec<String> = value
                .history()
                .map(|h| {
                    let period = h.period.map_or_else(|| "?".to_owned(), |t| rfc3339(&t));
                    format!("{period}: {}", h.quantity)
                })
                .collect();
            out.push_str(&entries.join("; "));
        }
        Value::Raw(groups) => write!(out, "{}  (not understood)", groups.as_str())?,
        // A kind of value newer than this program.
        _ => out.push_str("(a value this version cannot show)"),
    }
    Ok(())
}
