//! Test support: where the test data is, and what its `MANIFEST.md` says.
//!
//! The data the tests need is in the repository, `tests/data/` (see its `MANIFEST.md`). A
//! larger collection with the same layout can be added with the environment variable
//! `SMARTY_CORPUS=/path/to/corpus`: the corpus tests then run over both folders. Every
//! function panics with a message naming the file or folder that is missing, so a test never
//! passes because its data is absent.
//!
//! Include it from an integration test with
//!
//! ```ignore
//! #[path = "support/data.rs"]
//! mod data;
//! ```

#![allow(dead_code)] // each test binary (and examples/dump_expectations.rs) uses a part of it

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// The repository's own test data, `crates/smarty-p1/tests/data`.
pub fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// The folders to run corpus tests over: the repository's data, then the folder named by
/// `SMARTY_CORPUS` when it is set.
///
/// # Panics
/// When a folder has no `MANIFEST.md` (a `SMARTY_CORPUS` that names the wrong folder fails
/// loudly instead of being skipped).
pub fn dirs() -> Vec<PathBuf> {
    let mut dirs = vec![repo_dir()];
    if let Some(extra) = std::env::var_os("SMARTY_CORPUS").filter(|v| !v.is_empty()) {
        dirs.push(PathBuf::from(extra));
    }
    for dir in &dirs {
        let manifest = dir.join("MANIFEST.md");
        assert!(
            manifest.is_file(),
            "test data missing: {} does not exist{}",
            manifest.display(),
            if *dir == repo_dir() {
                ""
            } else {
                " (SMARTY_CORPUS must name a corpus folder with a MANIFEST.md)"
            }
        );
    }
    dirs
}

/// `true` for the repository's own data folder (whose manifest must list every file).
pub fn is_repo_dir(dir: &Path) -> bool {
    dir == repo_dir()
}

/// The bytes of `rel` inside `dir`.
///
/// # Panics
/// When the file cannot be read; the message names it.
pub fn read(dir: &Path, rel: &str) -> Vec<u8> {
    let path = dir.join(rel);
    fs::read(&path).unwrap_or_else(|e| panic!("test data missing: {}: {e}", path.display()))
}

/// The bytes of `rel` in the repository's data folder.
pub fn read_repo(rel: &str) -> Vec<u8> {
    read(&repo_dir(), rel)
}

/// The sorted files of `dir/sub` whose names end with `suffix`.
///
/// # Panics
/// When the folder cannot be read.
pub fn files(dir: &Path, sub: &str, suffix: &str) -> Vec<PathBuf> {
    let folder = dir.join(sub);
    let mut files: Vec<PathBuf> = fs::read_dir(&folder)
        .unwrap_or_else(|e| panic!("test data missing: {}: {e}", folder.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    files.sort();
    files
}

/// LF → CR LF (for captures that lost their CR bytes when they were saved).
pub fn crlf(lf: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(lf.len() + lf.len() / 16);
    for &b in lf {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// The `basjes_ttyUSB0_raw` capture with its line ends restored: 566 complete telegrams with
/// valid CRCs after the tail of one more.
pub fn basjes_crlf() -> Vec<u8> {
    crlf(&read_repo("streams/basjes_ttyUSB0_raw_lf.txt"))
}

/// One row of a table in `MANIFEST.md`: the `file` column and every other column by its
/// header.
#[derive(Clone, Debug)]
pub struct Row {
    /// The path relative to the data folder, e.g. `telegrams/dsmr5_isk.txt`.
    pub file: String,
    /// Every column by its header (`"CRC"`, `"licence"`, …).
    pub cells: BTreeMap<String, String>,
}

impl Row {
    /// The cell of a column, or `""` when the table has no such column.
    pub fn get(&self, column: &str) -> &str {
        self.cells.get(column).map_or("", String::as_str)
    }
}

/// Every table row of `dir/MANIFEST.md` whose first column is `file`.
pub fn manifest(dir: &Path) -> Vec<Row> {
    let text = String::from_utf8(read(dir, "MANIFEST.md")).expect("MANIFEST.md is UTF-8");
    let mut rows = Vec::new();
    let mut header: Option<Vec<String>> = None;
    for line in text.lines() {
        if !line.starts_with('|') {
            header = None;
            continue;
        }
        let cells = split_row(line);
        if cells.first().map(String::as_str) == Some("file") {
            header = Some(cells);
            continue;
        }
        let Some(names) = &header else { continue };
        if cells
            .iter()
            .all(|c| c.chars().all(|ch| ch == '-' || ch == ':'))
        {
            continue; // |---|---|
        }
        let file = cells[0].clone();
        let cells = names.iter().cloned().zip(cells).collect();
        rows.push(Row { file, cells });
    }
    rows
}

/// The row for `file` (`telegrams/NAME.txt`).
pub fn row<'a>(rows: &'a [Row], file: &str) -> Option<&'a Row> {
    rows.iter().find(|r| r.file == file)
}

/// Splits `| a | b \| c | d |` into `["a", "b | c", "d"]` (Markdown escapes `|` in cells).
fn split_row(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cell.push('|');
                chars.next();
            }
            '|' => cells.push(std::mem::take(&mut cell).trim().to_owned()),
            _ => cell.push(c),
        }
    }
    cells.push(cell.trim().to_owned());
    cells
}
