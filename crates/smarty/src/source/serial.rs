//! Serial devices: USB P1 cables, UARTs, pseudo-terminals.

use std::fmt;
use std::path::{Path, PathBuf};

use tokio_serial::{DataBits, Parity, SerialPortBuilderExt, StopBits};

use super::{OpenFuture, Reader, Source};
use crate::cli::{SerialArgs, SerialFormat};

/// A serial device at a baud rate and format (115200 8N1 for Smarty and DSMR 5).
#[derive(Debug)]
pub struct SerialSource {
    path: PathBuf,
    baud: u32,
    format: SerialFormat,
}

impl SerialSource {
    /// A source reading `path`.
    pub fn new(path: &Path, args: &SerialArgs) -> Self {
        SerialSource {
            path: path.to_owned(),
            baud: args.baud,
            format: args.serial,
        }
    }
}

impl fmt::Display for SerialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({} {}{}{})",
            self.path.display(),
            self.baud,
            self.format.data_bits,
            self.format.parity,
            self.format.stop_bits
        )
    }
}

impl Source for SerialSource {
    fn open(&self) -> OpenFuture<'_> {
        Box::pin(async move {
            let data_bits = match self.format.data_bits {
                5 => DataBits::Five,
                6 => DataBits::Six,
                7 => DataBits::Seven,
                _ => DataBits::Eight,
            };
            let parity = match self.format.parity {
                'E' => Parity::Even,
                'O' => Parity::Odd,
                _ => Parity::None,
            };
            let stop_bits = match self.format.stop_bits {
                2 => StopBits::Two,
                _ => StopBits::One,
            };
            let path = self.path.to_string_lossy().into_owned();
            #[cfg_attr(not(unix), allow(unused_mut, reason = "set_exclusive is Unix-only"))]
            let mut port = tokio_serial::new(path, self.baud)
                .data_bits(data_bits)
                .parity(parity)
                .stop_bits(stop_bits)
                .open_native_async()
                .map_err(std::io::Error::from)?;
            // Another reader may share a ser2net-less pty in tests; exclusivity is not needed.
            #[cfg(unix)]
            let _ = port.set_exclusive(false);
            Ok(Box::new(port) as Reader)
        })
    }

    fn is_live(&self) -> bool {
        true
    }
}
