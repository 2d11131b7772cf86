//! `--format raw`: each frame (or plaintext telegram) as one line of upper-case hex.

use std::io::{self, Write};

use smarty_p1::Decoded;

use super::Sink;

pub(super) struct RawSink {
    out: Box<dyn Write + Send>,
    line: String,
}

impl RawSink {
    pub(super) fn new(out: Box<dyn Write + Send>) -> Self {
        RawSink {
            out,
            line: String::with_capacity(4096),
        }
    }

    fn write_hex(&mut self, bytes: &[u8]) -> io::Result<()> {
        use std::fmt::Write as _;
        self.line.clear();
        let _ = writeln!(self.line, "{}", smarty_p1::hex::upper(bytes));
        self.out.write_all(self.line.as_bytes())?;
        self.out.flush()
    }
}

impl Sink for RawSink {
    fn telegram(&mut self, decoded: &Decoded<'_>) -> io::Result<()> {
        self.write_hex(decoded.raw)
    }

    fn forwards_undecrypted(&self) -> bool {
        true
    }

    fn undecrypted_frame(&mut self, frame: &[u8]) -> io::Result<()> {
        self.write_hex(frame)
    }
}
