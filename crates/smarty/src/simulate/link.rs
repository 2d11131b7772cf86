//! Where the virtual meter sends its frames: a pseudo-terminal, TCP clients, a file or stdout.

use std::io::{self, Write};
use std::net::{TcpListener, TcpStream};
#[cfg(unix)]
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[cfg(unix)]
use serialport::{ClearBuffer, SerialPort, TTYPort};

/// A destination for frames.
pub trait Link: Send {
    /// Sends one frame. Errors on live links (no reader, a client gone) are not fatal.
    ///
    /// # Errors
    /// When the frame cannot be written.
    fn send(&mut self, frame: &[u8]) -> io::Result<()>;

    /// Where it sends, for messages.
    fn describe(&self) -> String;

    /// `true` when a write error ends the simulation (files, stdout).
    fn is_fatal(&self) -> bool {
        false
    }
}

/// A pseudo-terminal: a reader opens its slave side like a serial device.
#[cfg(unix)]
pub struct PtyLink {
    master: TTYPort,
    slave: TTYPort,
    path: PathBuf,
    link: Option<PathBuf>,
}

#[cfg(unix)]
impl PtyLink {
    /// Opens a pseudo-terminal; with `link`, also a symlink to its slave device.
    ///
    /// # Errors
    /// When no pseudo-terminal can be opened or the symlink cannot be made.
    pub fn open(link: Option<&Path>) -> io::Result<Self> {
        let (mut master, slave) = TTYPort::pair().map_err(io::Error::from)?;
        master
            .set_timeout(Duration::from_secs(2))
            .map_err(io::Error::from)?;
        let path = PathBuf::from(
            slave
                .name()
                .ok_or_else(|| io::Error::other("the pseudo-terminal has no name"))?,
        );
        if let Some(link) = link {
            if link
                .symlink_metadata()
                .is_ok_and(|m| m.file_type().is_symlink())
            {
                std::fs::remove_file(link)?;
            }
            std::os::unix::fs::symlink(&path, link).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot create the link {}: {e}", link.display()),
                )
            })?;
        }
        Ok(PtyLink {
            master,
            slave,
            path,
            link: link.map(Path::to_owned),
        })
    }

    /// The slave device a reader opens (`/dev/pts/N`), or the symlink when one was made.
    pub fn reader_path(&self) -> &Path {
        self.link.as_deref().unwrap_or(&self.path)
    }
}

#[cfg(unix)]
impl Link for PtyLink {
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        // A meter's output is lost when nobody listens: drop what no reader took.
        let _ = self.slave.clear(ClearBuffer::Input);
        self.master.write_all(frame)?;
        self.master.flush()
    }

    fn describe(&self) -> String {
        match &self.link {
            Some(link) => format!("{} (symlink {})", self.path.display(), link.display()),
            None => self.path.display().to_string(),
        }
    }
}

#[cfg(unix)]
impl Drop for PtyLink {
    fn drop(&mut self) {
        if let Some(link) = &self.link
            && std::fs::read_link(link).is_ok_and(|target| target == self.path)
        {
            let _ = std::fs::remove_file(link);
        }
    }
}

/// A TCP server like ser2net: every connected client gets every frame.
pub struct TcpLink {
    address: String,
    clients: Arc<Mutex<Vec<TcpStream>>>,
}

impl TcpLink {
    /// Listens on `address` and accepts clients in the background.
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub fn listen(address: &str) -> io::Result<Self> {
        let listener = TcpListener::bind(address)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {address}: {e}")))?;
        let address = listener.local_addr()?.to_string();
        let clients = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::clone(&clients);
        std::thread::Builder::new()
            .name("simulate-accept".into())
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
                    let _ = stream.set_nodelay(true);
                    if let Ok(peer) = stream.peer_addr() {
                        tracing::info!("client {peer} connected");
                    }
                    accepted.lock().expect("clients lock").push(stream);
                }
            })?;
        Ok(TcpLink { address, clients })
    }
}

impl Link for TcpLink {
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        let mut clients = self.clients.lock().expect("clients lock");
        clients.retain_mut(|client| match client.write_all(frame) {
            Ok(()) => true,
            Err(e) => {
                tracing::info!("client gone: {e}");
                false
            }
        });
        Ok(())
    }

    fn describe(&self) -> String {
        format!("tcp://{}", self.address)
    }
}

/// A file or standard output.
pub struct WriterLink {
    out: Box<dyn Write + Send>,
    name: String,
}

impl WriterLink {
    /// Writes to `out`, named `name` in messages.
    pub fn new(out: Box<dyn Write + Send>, name: &str) -> Self {
        WriterLink {
            out,
            name: name.to_owned(),
        }
    }
}

impl Link for WriterLink {
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        self.out.write_all(frame)?;
        self.out.flush()
    }

    fn describe(&self) -> String {
        self.name.clone()
    }

    fn is_fatal(&self) -> bool {
        true
    }
}
