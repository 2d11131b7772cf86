//! Files and standard input: read to the end. Hex captures (`--format raw`) are recognised.

use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

use super::{HexOrBinary, OpenFuture, Reader, Source};
use crate::pipeline::FILE_BLOCK;

/// A capture file.
#[derive(Debug)]
pub struct FileSource {
    path: PathBuf,
}

impl FileSource {
    /// A source reading `path` once.
    pub fn new(path: &Path) -> Self {
        FileSource {
            path: path.to_owned(),
        }
    }
}

impl fmt::Display for FileSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "file {}", self.path.display())
    }
}

impl Source for FileSource {
    fn open(&self) -> OpenFuture<'_> {
        Box::pin(async move {
            let file = std::fs::File::open(&self.path)?;
            Ok(Box::new(HexOrBinary::with_block(InPlace(file), FILE_BLOCK)) as Reader)
        })
    }

    fn is_live(&self) -> bool {
        false
    }
}

/// A regular file read on the runtime's own thread, [`IN_PLACE_BLOCK`] bytes at a time,
/// instead of through its blocking pool (as `tokio::fs::File` does): handing every block to
/// another thread and back cost more than the read (a copy from the page cache into a buffer
/// that the other core then copies again), about a fifth of `smarty read`'s CPU for a capture
/// (docs/performance.md). A block takes well under a millisecond from the page cache and a
/// few milliseconds from an SD card, for which the thread stops.
struct InPlace(std::fs::File);

/// Bytes an [`InPlace`] file reads at a time.
const IN_PLACE_BLOCK: usize = 256 << 10;

impl AsyncRead for InPlace {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let want = buf.remaining().min(IN_PLACE_BLOCK);
        let read = self.get_mut().0.read(buf.initialize_unfilled_to(want))?;
        buf.advance(read);
        Poll::Ready(Ok(()))
    }
}

/// Standard input.
#[derive(Debug)]
pub struct StdinSource;

impl fmt::Display for StdinSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("standard input")
    }
}

impl Source for StdinSource {
    fn open(&self) -> OpenFuture<'_> {
        Box::pin(async {
            Ok(Box::new(HexOrBinary::with_block(tokio::io::stdin(), FILE_BLOCK)) as Reader)
        })
    }

    fn is_live(&self) -> bool {
        false
    }
}
