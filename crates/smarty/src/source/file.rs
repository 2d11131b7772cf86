//! Files and standard input: read to the end. Hex captures (`--format raw`) are recognised.

use std::fmt;
use std::path::{Path, PathBuf};

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
            let mut file = tokio::fs::File::open(&self.path).await?;
            // One trip through the runtime's blocking pool per block, not per 8 KiB.
            file.set_max_buf_size(FILE_BLOCK);
            Ok(Box::new(HexOrBinary::with_block(file, FILE_BLOCK)) as Reader)
        })
    }

    fn is_live(&self) -> bool {
        false
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
