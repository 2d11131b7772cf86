//! `--format json`: one object per telegram per line ([`smarty_model::json`], docs/formats.md).

use std::io::{self, Write};

use smarty_p1::Decoded;

use super::Sink;
use smarty_model::json::telegram_json;

pub(super) struct JsonSink {
    out: Box<dyn Write + Send>,
}

impl JsonSink {
    pub(super) fn new(out: Box<dyn Write + Send>) -> Self {
        JsonSink { out }
    }
}

impl Sink for JsonSink {
    fn telegram(&mut self, decoded: &Decoded<'_>) -> io::Result<()> {
        let object = telegram_json(decoded);
        serde_json::to_writer(&mut self.out, &object)?;
        self.out.write_all(b"\n")?;
        self.out.flush()
    }
}
