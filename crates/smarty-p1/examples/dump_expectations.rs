//! Prints every normalised expectation of the corpus (`tests/data` and, when `SMARTY_CORPUS`
//! is set, that folder too), and what could not be translated: a tool for whoever adds
//! telegrams to the corpus, beside the tests that check the expectations
//! (`tests/expectations_selfcheck.rs`).
//!
//! ```sh
//! cargo run -p smarty-p1 --example dump_expectations [SUBSTRING]
//! ```
//!
//! With `SUBSTRING`, only the files whose name contains it.

// The tests' own loader (each user takes a part of it: it allows dead code itself).
#[path = "../tests/support/data.rs"]
mod data;
#[path = "../tests/support/expectations.rs"]
mod expectations;

fn main() {
    let filter = std::env::args().nth(1).unwrap_or_default();
    for path in data::dirs()
        .iter()
        .flat_map(|d| data::files(d, "telegrams", ".expected.json"))
    {
        let e = expectations::load(&path);
        if !e.file.contains(&filter) {
            continue;
        }
        println!(
            "== {} crc_valid={:?} header={:?}",
            e.file, e.crc_valid, e.header
        );
        for c in &e.checks {
            println!("   {:<14} {:?}    <- {}", c.obis, c.what, c.origin);
        }
        for r in &e.raw_lines {
            println!("   raw {r}");
        }
        for u in &e.unparsed {
            println!("   UNPARSED {u}");
        }
    }
}
