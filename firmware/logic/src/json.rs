//! A small JSON writer into a `String`: the payloads are built field by field, in the order
//! the gateway writes them (its `serde_json` keeps insertion order; the `alloc`-only
//! `serde_json` here would sort a `Map`), with `serde_json` escaping strings and formatting
//! floats.

use alloc::string::String;
use core::fmt::Write;

use smarty_p1::Decimal;

/// `text` as a JSON string (quoted, escaped).
pub(crate) fn string(out: &mut String, text: &str) {
    // Serialising a `str` cannot fail.
    out.push_str(&serde_json::to_string(text).unwrap_or_default());
}

/// `Some(text)` as a JSON string, `None` as `null`.
pub(crate) fn opt_string(out: &mut String, text: Option<&str>) {
    match text {
        Some(text) => string(out, text),
        None => out.push_str("null"),
    }
}

/// A decimal as the gateway writes it: integers as integers, others as the nearest `f64`.
pub(crate) fn decimal(out: &mut String, d: Decimal) {
    if d.is_integer() {
        let _ = write!(out, "{}", d.mantissa());
    } else {
        float(out, d.to_f64());
    }
}

/// A float as `serde_json` writes it (`null` when not finite).
pub(crate) fn float(out: &mut String, x: f64) {
    if x.is_finite() {
        out.push_str(&serde_json::to_string(&x).unwrap_or_default());
    } else {
        out.push_str("null");
    }
}

/// An object under construction: `{"a":1,"b":…}`.
pub(crate) struct Object<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> Object<'a> {
    /// Opens `{`.
    pub(crate) fn new(out: &'a mut String) -> Self {
        out.push('{');
        Object { out, first: true }
    }

    /// Writes `"key":` and returns the buffer for the value.
    pub(crate) fn key(&mut self, key: &str) -> &mut String {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        string(self.out, key);
        self.out.push(':');
        self.out
    }

    /// A string field.
    pub(crate) fn str(&mut self, key: &str, value: &str) {
        string(self.key(key), value);
    }

    /// A string field, `null` when `None`.
    pub(crate) fn opt_str(&mut self, key: &str, value: Option<&str>) {
        opt_string(self.key(key), value);
    }

    /// A field whose value is already JSON text.
    pub(crate) fn raw(&mut self, key: &str, json: &str) {
        self.key(key).push_str(json);
    }

    /// An integer or boolean field (anything whose `Display` is JSON).
    pub(crate) fn display(&mut self, key: &str, value: impl core::fmt::Display) {
        let _ = write!(self.key(key), "{value}");
    }

    /// Closes `}`.
    pub(crate) fn end(self) {
        self.out.push('}');
    }
}
