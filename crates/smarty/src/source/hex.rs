//! Captures written by `smarty read --format raw`: one frame per line in hex. File and stdin
//! sources recognise them and hand the decoder the bytes, so a capture made where the cable is
//! can be decrypted where the key is.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use tokio::io::{AsyncRead, ReadBuf};
use tokio_stream::Stream;
use tokio_util::io::{ReaderStream, StreamReader};

/// Passes binary streams through and turns hex-line captures into bytes.
///
/// A capture is hex when its first chunk holds only hex digits and white space and starts with
/// `DB08` (an encrypted frame) or `2F` (a plaintext telegram's `/`): a binary stream starts
/// with the byte 0xDB or `/` itself, never with those characters.
pub struct HexOrBinary<R>(StreamReader<Chunks<R>, Bytes>);

impl<R: AsyncRead + Unpin> HexOrBinary<R> {
    /// Wraps a reader, reading `block` bytes at a time from it.
    pub fn with_block(inner: R, block: usize) -> Self {
        HexOrBinary(StreamReader::new(Chunks {
            inner: ReaderStream::with_capacity(inner, block),
            mode: Mode::Unknown,
        }))
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for HexOrBinary<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

/// What the stream turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Nothing read yet.
    Unknown,
    /// Bytes as they are.
    Binary,
    /// Hex text; `half` holds a digit waiting for its partner.
    Hex { half: Option<u8> },
}

/// The inner reader's chunks, decoded from hex if it is a capture.
struct Chunks<R> {
    inner: ReaderStream<R>,
    mode: Mode,
}

impl<R: AsyncRead + Unpin> Stream for Chunks<R> {
    type Item = io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let Some(chunk) = ready!(Pin::new(&mut this.inner).poll_next(cx)) else {
            return Poll::Ready(None);
        };
        let data = chunk?;
        if this.mode == Mode::Unknown {
            this.mode = if looks_like_hex_capture(&data) {
                tracing::info!("reading a hex capture (one frame per line)");
                Mode::Hex { half: None }
            } else {
                Mode::Binary
            };
        }
        let Mode::Hex { half } = &mut this.mode else {
            return Poll::Ready(Some(Ok(data)));
        };
        let mut bytes = Vec::with_capacity(data.len() / 2);
        for &b in &data {
            if let Some(v) = smarty_p1::hex::digit(b) {
                match half.take() {
                    Some(high) => bytes.push((high << 4) | v),
                    None => *half = Some(v),
                }
            }
        }
        Poll::Ready(Some(Ok(bytes.into())))
    }
}

fn looks_like_hex_capture(chunk: &[u8]) -> bool {
    let text: Vec<u8> = chunk
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let starts = text.len() >= 4
        && (text[..4].eq_ignore_ascii_case(b"DB08") || text[..2].eq_ignore_ascii_case(b"2F"));
    starts && text.iter().all(u8::is_ascii_hexdigit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn read_all(input: &'static [u8]) -> Vec<u8> {
        let mut out = Vec::new();
        HexOrBinary::with_block(input, 8192)
            .read_to_end(&mut out)
            .await
            .unwrap();
        out
    }

    #[tokio::test]
    async fn hex_lines_become_bytes_and_binary_passes_through() {
        assert_eq!(
            read_all(b"DB0801\r\nDB0802\n").await,
            [0xDB, 8, 1, 0xDB, 8, 2]
        );
        assert_eq!(read_all(b"2f41\n").await, b"/A");
        assert_eq!(read_all(b"\xDB\x08\x01").await, [0xDB, 8, 1]);
        assert_eq!(read_all(b"/ISK5\\2M550\r\n").await, b"/ISK5\\2M550\r\n");
        assert_eq!(read_all(b"DB08 not hex").await, b"DB08 not hex");
    }
}
