//! TCP sources: ser2net, socat, network P1 dongles.

use std::fmt;
use std::time::Duration;

use anyhow::{Result, bail};

use super::{OpenFuture, Reader, Source};

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// `tcp://HOST:PORT`.
#[derive(Debug)]
pub struct TcpSource {
    address: String,
}

impl TcpSource {
    /// A source connecting to `HOST:PORT`.
    ///
    /// # Errors
    /// When the address has no port.
    pub fn new(address: &str) -> Result<Self> {
        let port_ok = address
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !port_ok {
            bail!("tcp://{address}: expected tcp://HOST:PORT, e.g. tcp://192.168.1.50:2001");
        }
        Ok(TcpSource {
            address: address.to_owned(),
        })
    }
}

impl fmt::Display for TcpSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tcp://{}", self.address)
    }
}

impl Source for TcpSource {
    fn open(&self) -> OpenFuture<'_> {
        Box::pin(async move {
            let stream = tokio::time::timeout(
                CONNECT_TIMEOUT,
                tokio::net::TcpStream::connect(&self.address),
            )
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
            })??;
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as Reader)
        })
    }

    fn is_live(&self) -> bool {
        true
    }
}
