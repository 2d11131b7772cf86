//! The keys file of a fleet: one meter a line, CSV with the header
//! `name,system_title,key,auth_key` (docs/fleet.md).
//!
//! ```text
//! name,system_title,key,auth_key
//! meter-0001,5341471030700100,000102030405060708090A0B0C0D0E0F,
//! ,53414767700004D2,D491470F47126332B07D1923B3504188,00112233445566778899AABBCCDDEEFF
//! ```
//!
//! - `system_title`: the meter's 8-byte system title, 16 hex digits (the first bytes of every
//!   frame it sends; `SAG…` on a Sagemcom);
//! - `key`: its decryption key, 32 hex digits;
//! - `name`: how the fleet names it, empty for its system title in upper-case hex; 1 to 64
//!   letters, digits, `_` and `-`, as every meter name of smarty;
//! - `auth_key`: its authentication key, 32 hex digits; empty for Luxembourg's
//!   (`00112233445566778899AABBCCDDEEFF`, the same for every Smarty).
//!
//! Hex digits may be upper or lower case; spaces around fields, empty lines, lines starting
//! with `#` and a byte-order mark are ignored; the columns may come in any order, and `name`
//! and `auth_key` may be left out. A system title or a name given twice is refused. The file
//! holds secrets: [`write_file`] makes it readable by its owner only, and no error or `Debug`
//! output shows a key (only its line and column).
//!
//! This module only reads and writes the file; keeping the keys (wrapped under the master
//! key) is the business of the key store.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, BufRead as _, Read, Write};
use std::path::Path;

use smarty_p1::Key;

/// The header of the file, in the order [`write()`] writes it.
pub const HEADER: [&str; 4] = ["name", "system_title", "key", "auth_key"];

/// One meter of the file.
#[derive(Clone, PartialEq, Eq)]
pub struct MeterKeys {
    /// Its name; `None` when the file leaves it empty ([`MeterKeys::name`] is then the
    /// system title).
    pub name: Option<String>,
    /// Its system title.
    pub system_title: [u8; 8],
    /// Its decryption key.
    pub key: Key,
    /// Its authentication key; `None` for Luxembourg's.
    pub auth_key: Option<Key>,
}

impl MeterKeys {
    /// The meter's name: the one given, else its system title in upper-case hex.
    pub fn name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| smarty_p1::hex::upper(&self.system_title).to_string())
    }

    /// The authentication key that applies: the one given, else Luxembourg's.
    pub fn auth_key_or_default(&self) -> Key {
        self.auth_key
            .clone()
            .unwrap_or(Key::from_bytes(smarty_p1::LUXEMBOURG_AUTH_KEY))
    }
}

impl fmt::Debug for MeterKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeterKeys")
            .field("name", &self.name)
            .field(
                "system_title",
                &smarty_p1::hex::upper(&self.system_title).to_string(),
            )
            .field("key", &"<redacted>")
            .field("auth_key", &self.auth_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// What is wrong with a keys file. Never shows a key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeysCsvError {
    /// The file cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
    /// The first line is not the header.
    #[error(
        "the first line must be the header name,system_title,key,auth_key (name and auth_key \
         may be left out); {problem}"
    )]
    Header {
        /// What is wrong with it.
        problem: String,
    },
    /// A field of a line is malformed.
    #[error("line {line}, {column}: {problem}")]
    Field {
        /// The line (1 is the header).
        line: u64,
        /// The column's name.
        column: &'static str,
        /// What is wrong (never the key).
        problem: String,
    },
    /// A system title or a name given on two lines.
    #[error("line {line}: {what} is given on line {first} already")]
    Duplicate {
        /// The line.
        line: u64,
        /// The line that gave it first.
        first: u64,
        /// `system title 5341…`, `name meter-0001`.
        what: String,
    },
    /// A line that is not CSV (unbalanced quotes, another number of fields, not UTF-8).
    #[error("line {line}: {problem}")]
    Csv {
        /// The line.
        line: u64,
        /// What is wrong.
        problem: String,
    },
}

/// The columns of the file, by position.
struct Columns {
    name: Option<usize>,
    system_title: usize,
    key: usize,
    auth_key: Option<usize>,
}

impl Columns {
    fn of(header: &csv::StringRecord) -> Result<Columns, KeysCsvError> {
        let bad = |problem: String| Err(KeysCsvError::Header { problem });
        let mut found: HashMap<&str, usize> = HashMap::new();
        for (i, field) in header.iter().enumerate() {
            let field = field.trim();
            let Some(column) = HEADER.iter().find(|c| c.eq_ignore_ascii_case(field)) else {
                return bad(format!("unknown column {field:?}"));
            };
            if found.insert(column, i).is_some() {
                return bad(format!("the column {column} is given twice"));
            }
        }
        match (found.get("system_title"), found.get("key")) {
            (Some(&system_title), Some(&key)) => Ok(Columns {
                name: found.get("name").copied(),
                system_title,
                key,
                auth_key: found.get("auth_key").copied(),
            }),
            _ => bad("the columns system_title and key are needed".to_owned()),
        }
    }
}

/// Reads a keys file from `input`.
///
/// # Errors
/// See [`KeysCsvError`]: the first problem found, with its line.
pub fn read(input: impl Read) -> Result<Vec<MeterKeys>, KeysCsvError> {
    // A byte-order mark (Windows editors write one) would hide a first comment line.
    let mut input = io::BufReader::new(input);
    let start = input.fill_buf().map_err(|e| KeysCsvError::Csv {
        line: 1,
        problem: e.to_string(),
    })?;
    if start.starts_with(b"\xEF\xBB\xBF") {
        input.consume(3);
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .comment(Some(b'#'))
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(input);
    let mut records = reader.records();
    let header = match records.next() {
        Some(record) => record.map_err(csv_error)?,
        None => {
            return Err(KeysCsvError::Header {
                problem: "the file is empty".to_owned(),
            });
        }
    };
    let columns = Columns::of(&header)?;
    let mut meters = Vec::new();
    let mut titles: HashMap<[u8; 8], u64> = HashMap::new();
    let mut names: HashMap<String, u64> = HashMap::new();
    for record in records {
        let record = record.map_err(csv_error)?;
        let line = record.position().map_or(0, csv::Position::line);
        if record.iter().all(str::is_empty) {
            continue;
        }
        let meter = parse_line(&record, &columns, line)?;
        let title = smarty_p1::hex::upper(&meter.system_title).to_string();
        if let Some(&first) = titles.get(&meter.system_title) {
            return Err(KeysCsvError::Duplicate {
                line,
                first,
                what: format!("the system title {title}"),
            });
        }
        titles.insert(meter.system_title, line);
        let name = meter.name();
        if let Some(&first) = names.get(&name) {
            return Err(KeysCsvError::Duplicate {
                line,
                first,
                what: format!("the name {name}"),
            });
        }
        names.insert(name, line);
        meters.push(meter);
    }
    Ok(meters)
}

/// Reads the keys file `path`.
///
/// # Errors
/// The file cannot be read, or see [`read`].
pub fn read_file(path: &Path) -> Result<Vec<MeterKeys>, KeysCsvError> {
    let file = std::fs::File::open(path).map_err(|source| KeysCsvError::Io {
        path: path.display().to_string(),
        source,
    })?;
    read(io::BufReader::new(file))
}

/// Writes `meters` as a keys file to `output`: the header, then a line per meter (hex in
/// upper case; empty `name` and `auth_key` where `None`).
///
/// # Errors
/// Writing fails.
pub fn write(output: impl Write, meters: &[MeterKeys]) -> io::Result<()> {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(output);
    writer.write_record(HEADER)?;
    for meter in meters {
        let auth = meter
            .auth_key
            .as_ref()
            .map(|k| smarty_p1::hex::upper(k.as_bytes()).to_string())
            .unwrap_or_default();
        writer.write_record([
            meter.name.as_deref().unwrap_or(""),
            &smarty_p1::hex::upper(&meter.system_title).to_string(),
            &smarty_p1::hex::upper(meter.key.as_bytes()).to_string(),
            &auth,
        ])?;
    }
    writer.flush()
}

/// Writes `meters` as a new keys file `path`, readable and writable by its owner only; an
/// existing file is never overwritten.
///
/// # Errors
/// The file exists already or cannot be written.
pub fn write_file(path: &Path, meters: &[MeterKeys]) -> Result<(), KeysCsvError> {
    let io_error = |source| KeysCsvError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(path).map_err(io_error)?;
    let mut out = io::BufWriter::new(file);
    write(&mut out, meters).map_err(io_error)?;
    let file = out.into_inner().map_err(|e| io_error(e.into_error()))?;
    file.sync_all().map_err(io_error)
}

fn csv_error(e: csv::Error) -> KeysCsvError {
    let line = e.position().map_or(0, csv::Position::line);
    let problem = match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("{len} fields where the header has {expected_len}"),
        csv::ErrorKind::Utf8 { .. } => "not UTF-8 text".to_owned(),
        csv::ErrorKind::Io(e) => e.to_string(),
        _ => "not CSV".to_owned(),
    };
    KeysCsvError::Csv { line, problem }
}

/// One meter's line.
fn parse_line(
    record: &csv::StringRecord,
    columns: &Columns,
    line: u64,
) -> Result<MeterKeys, KeysCsvError> {
    let field = |i: usize| record.get(i).unwrap_or("");
    let bad = |column: &'static str, problem: String| KeysCsvError::Field {
        line,
        column,
        problem,
    };
    let name = match columns.name.map(field) {
        None | Some("") => None,
        Some(name) => {
            if name.len() > 64
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(bad(
                    "name",
                    format!(
                        "{name:?}: a name is 1 to 64 letters (a-z, A-Z), digits, '_' and '-' \
                         (or empty for the system title)"
                    ),
                ));
            }
            Some(name.to_owned())
        }
    };
    let title_text = field(columns.system_title);
    let system_title = hex_bytes::<8>(title_text)
        .map_err(|problem| bad("system_title", format!("{problem} (16 hex digits)")))?;
    let key = hex_bytes::<16>(field(columns.key))
        .map_err(|problem| bad("key", format!("{problem} (32 hex digits)")))?;
    let auth_key = match columns.auth_key.map(field) {
        None | Some("") => None,
        Some(text) => Some(hex_bytes::<16>(text).map_err(|problem| {
            bad(
                "auth_key",
                format!("{problem} (32 hex digits, or empty for Luxembourg's)"),
            )
        })?),
    };
    Ok(MeterKeys {
        name,
        system_title,
        key: Key::from_bytes(key),
        auth_key: auth_key.map(Key::from_bytes),
    })
}

/// `N` bytes from exactly `2 N` hex digits (no separators); the problem otherwise, without
/// the text (it may be a key).
fn hex_bytes<const N: usize>(text: &str) -> Result<[u8; N], String> {
    if text.is_empty() {
        return Err("missing".to_owned());
    }
    if let Some(position) = text.chars().position(|c| !c.is_ascii_hexdigit()) {
        return Err(format!(
            "a character that is not a hex digit at position {}",
            position + 1
        ));
    }
    if text.len() != 2 * N {
        return Err(format!("{} hex digits", text.len()));
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).expect("hex digits");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "000102030405060708090A0B0C0D0E0F";

    fn meter(name: Option<&str>, title: u8, auth: bool) -> MeterKeys {
        let mut system_title = *b"SAGgp\0\0\0";
        system_title[7] = title;
        MeterKeys {
            name: name.map(str::to_owned),
            system_title,
            key: Key::from_bytes([title; 16]),
            auth_key: auth.then(|| Key::from_bytes([0xA5; 16])),
        }
    }

    #[test]
    fn a_written_file_reads_back_the_same() {
        let meters = vec![
            meter(Some("meter-0001"), 1, false),
            meter(None, 2, true),
            meter(Some("b_3"), 3, false),
        ];
        let mut text = Vec::new();
        write(&mut text, &meters).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.starts_with("name,system_title,key,auth_key\r\nmeter-0001,5341476770000001,"),
            "{text}"
        );
        assert_eq!(read(text.as_bytes()).unwrap(), meters);
        assert_eq!(meters[1].name(), "5341476770000002");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.csv");
        write_file(&path, &meters).unwrap();
        assert_eq!(read_file(&path).unwrap(), meters);
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = write_file(&path, &meters).unwrap_err();
        assert!(again.to_string().contains("exists"), "{again}");
    }

    #[test]
    fn lenient_in_layout_strict_in_content() {
        let text = format!(
            "\u{feff}# the keys of the fleet\nKey , system_title\n\n {} , 53414767700004d2 \n",
            KEY.to_lowercase()
        );
        let meters = read(text.as_bytes()).unwrap();
        assert_eq!(meters.len(), 1);
        assert_eq!(meters[0].name(), "53414767700004D2");
        assert_eq!(meters[0].key.as_bytes()[15], 0x0F);
        assert_eq!(
            meters[0].auth_key_or_default().as_bytes(),
            &smarty_p1::LUXEMBOURG_AUTH_KEY
        );
    }

    #[test]
    fn errors_name_the_line_and_column_never_the_key() {
        let secret = "D491470F47126332B07D1923B35041";
        let cases: [(String, &str); 8] = [
            (String::new(), "the file is empty"),
            ("name,title,key\n".into(), "unknown column \"title\""),
            ("name,key\n".into(), "system_title and key are needed"),
            (
                format!("name,system_title,key,auth_key\nm,5341476770000001,{secret},\n"),
                "line 2, key: 30 hex digits (32 hex digits)",
            ),
            (
                format!("name,system_title,key,auth_key\nm,5341476770000001,{secret}XY,\n"),
                "line 2, key: a character that is not a hex digit at position 31",
            ),
            (
                format!("system_title,key\n5341476770000001,{KEY}\n5341476770000001,{KEY}\n"),
                "line 3: the system title 5341476770000001 is given on line 2 already",
            ),
            (
                format!("name,system_title,key\na b,5341476770000001,{KEY}\n"),
                "line 2, name: \"a b\"",
            ),
            (
                "name,system_title,key\nm,5341476770000001\n".to_owned(),
                "line 2: 2 fields where the header has 3",
            ),
        ];
        for (text, expected) in cases {
            let message = read(text.as_bytes()).unwrap_err().to_string();
            assert!(message.contains(expected), "{text:?}: {message}");
            assert!(!message.contains(secret), "{message}");
        }
        let names = format!(
            "name,system_title,key\nm,5341476770000001,{KEY}\n,4D00000000000000,{KEY}\nm,5341476770000002,{KEY}\n"
        );
        let message = read(names.as_bytes()).unwrap_err().to_string();
        assert_eq!(message, "line 4: the name m is given on line 2 already");
        let debug = format!("{:?}", meter(Some("m"), 1, true));
        assert!(!debug.contains("0101"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
    }
}
