//! A series answer written as it is sent, in chunks of about [`CHUNK`] bytes: the JSON text
//! of a large answer never exists whole in memory.

use std::convert::Infallible;
use std::io::Write as _;

use axum::body::{Body, Bytes};
use serde_json::{Value as JsonValue, json};
use tokio::sync::OwnedSemaphorePermit;

use super::number::{decimals_of_unit, round};
use smarty_store::Series;

/// Bytes per chunk of a streamed answer.
pub const CHUNK: usize = 64 * 1024;

/// The series answer (docs/api.md) as a streamed body. `permit` is held until the last
/// chunk is sent or the client goes away, so that the store-query bound also bounds the
/// answers in memory.
pub fn series_body(
    series: Series,
    meter: &str,
    from: i64,
    to: i64,
    permit: Option<OwnedSemaphorePermit>,
) -> Body {
    let head = json!({
        "meter": meter,
        "field": series.field,
        "unit": series.unit,
        "resolution": series.resolution,
        "from": from,
        "to": to,
    });
    let chunks = SeriesChunks {
        decimals: decimals_of_unit(&series.unit),
        head: Some(head),
        series,
        section: 0,
        position: 0,
        done: false,
        _permit: permit,
    };
    Body::from_stream(tokio_stream::iter(chunks))
}

/// The chunks of one series answer: the head's fields, then the arrays `t`, `value`, `min`
/// and `max` (the last two for instantaneous fields), a piece at a time.
struct SeriesChunks {
    series: Series,
    decimals: Option<u32>,
    head: Option<JsonValue>,
    /// The array being written: 0 `t`, 1 `value`, 2 `min`, 3 `max`, 4 the end.
    section: usize,
    /// The next element of that array.
    position: usize,
    done: bool,
    _permit: Option<OwnedSemaphorePermit>,
}

impl SeriesChunks {
    fn floats(&self, section: usize) -> Option<&[f64]> {
        match section {
            1 => Some(&self.series.value),
            2 => self.series.min.as_deref(),
            3 => self.series.max.as_deref(),
            _ => None,
        }
    }
}

impl Iterator for SeriesChunks {
    type Item = Result<Bytes, Infallible>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let mut out: Vec<u8> = Vec::with_capacity(CHUNK + 64);
        if let Some(head) = self.head.take() {
            let text = head.to_string();
            // `{…}` without its closing brace: the arrays follow.
            out.extend_from_slice(&text.as_bytes()[..text.len() - 1]);
        }
        while out.len() < CHUNK {
            let name = match self.section {
                0 => "t",
                1 => "value",
                2 => "min",
                3 => "max",
                _ => {
                    out.push(b'}');
                    self.done = true;
                    break;
                }
            };
            let len = if self.section == 0 {
                self.series.t.len()
            } else {
                match self.floats(self.section) {
                    Some(values) => values.len(),
                    None => {
                        self.section += 1;
                        continue;
                    }
                }
            };
            if self.position == 0 {
                let _ = write!(out, ",\"{name}\":[");
            }
            while self.position < len && out.len() < CHUNK {
                if self.position > 0 {
                    out.push(b',');
                }
                if self.section == 0 {
                    let _ = write!(out, "{}", self.series.t[self.position]);
                } else if let Some(values) = self.floats(self.section) {
                    let x = values[self.position];
                    let x = self.decimals.map_or(x, |d| round(x, d));
                    let x = if x == 0.0 { 0.0 } else { x };
                    // serde_json writes the shortest text of a double, `null` for NaN.
                    let _ = serde_json::to_writer(&mut out, &x);
                }
                self.position += 1;
            }
            if self.position >= len {
                out.push(b']');
                self.section += 1;
                self.position = 0;
            }
        }
        Some(Ok(Bytes::from(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smarty_model::period::Resolution;

    fn collect(chunks: SeriesChunks) -> (Vec<usize>, JsonValue) {
        let mut sizes = Vec::new();
        let mut all = Vec::new();
        for chunk in chunks {
            let chunk = chunk.unwrap();
            sizes.push(chunk.len());
            all.extend_from_slice(&chunk);
        }
        (sizes, serde_json::from_slice(&all).unwrap())
    }

    fn chunks(series: Series) -> SeriesChunks {
        SeriesChunks {
            decimals: decimals_of_unit(&series.unit),
            head: Some(json!({"meter": "home", "field": series.field, "from": 0, "to": 9})),
            series,
            section: 0,
            position: 0,
            done: false,
            _permit: None,
        }
    }

    #[test]
    fn large_series_come_in_rounded_chunks() {
        let n = 50_000;
        let series = Series {
            field: "power_import_kw".into(),
            unit: "kW".into(),
            resolution: Resolution::Min15,
            t: (0..n).map(|i| i64::from(i) * 900).collect(),
            value: (0..n).map(|i| f64::from(i) * 0.1 + 0.2).collect(),
            min: Some(vec![-0.0; n as usize]),
            max: Some((0..n).map(|i| f64::from(i) / 3.0).collect()),
        };
        let (sizes, body) = collect(chunks(series.clone()));
        assert!(sizes.len() > 10, "{sizes:?}");
        assert!(sizes.iter().all(|s| *s <= CHUNK + 64), "{sizes:?}");
        assert_eq!(body["meter"], "home");
        assert_eq!(body["t"].as_array().unwrap().len(), n as usize);
        assert_eq!(body["t"][n as usize - 1], (n as i64 - 1) * 900);
        assert_eq!(body["value"][3].to_string(), "0.5");
        assert_eq!(body["min"][0].to_string(), "0.0");
        assert_eq!(body["max"][2].to_string(), "0.667");
        assert_eq!(body["max"].as_array().unwrap().len(), n as usize);
    }

    #[test]
    fn empty_and_energy_series() {
        let series = Series {
            field: "energy_import_kwh".into(),
            unit: "kWh".into(),
            resolution: Resolution::Day,
            t: vec![],
            value: vec![],
            min: None,
            max: None,
        };
        let (sizes, body) = collect(chunks(series));
        assert_eq!(sizes.len(), 1);
        assert_eq!(
            body,
            json!({"meter": "home", "field": "energy_import_kwh", "from": 0, "to": 9,
                   "t": [], "value": []})
        );
    }
}
