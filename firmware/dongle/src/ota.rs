//! Updates over the air into the other of two app slots (`ota_0`, `ota_1` in
//! `partitions.csv`), activated only when the image's ed25519 signature verifies, and
//! confirmed (or rolled back) on the first start from the new slot.
//!
//! [`server`] takes uploads on TCP port [`PORT`] in the logic crate's format
//! ([`smarty_dongle::ota`]: the 64-byte signature, the image's length, the image, as
//! `cargo ota upload` sends it); it answers `OK` (and restarts into the new slot) or
//! `ERR …`. Only the signature authenticates an upload: [`Update`] writes the image into the
//! next slot while a [`Verifier`] hashes it, and activates the slot only when the signature
//! verifies with the public key this firmware was built with ([`public_key`]:
//! `SMARTY_DONGLE_OTA_PUBLIC_KEY` at build time, from `cargo ota keygen`). A build without
//! one refuses every upload.

use embassy_net::{Stack, tcp::TcpSocket};
use embassy_time::Duration;
use embedded_io_async::{Read as _, Write as _};
use esp_bootloader_esp_idf::{
    ota::OtaImageState,
    ota_updater::OtaUpdater,
    partitions::{self, FlashStorage, PARTITION_TABLE_MAX_LEN},
};
pub use smarty_dongle::ota::PORT;
use smarty_dongle::ota::{HEADER_LEN, Header, OtaError, Verifier, public_key_from_hex};

/// The public key updates must be signed with: `SMARTY_DONGLE_OTA_PUBLIC_KEY` (64 hex digits)
/// when the firmware was built.
///
/// # Errors
/// [`OtaError::NoPublicKey`] for a build without one, [`OtaError::PublicKey`] for one that is
/// not a key (build.rs refuses those already).
pub fn public_key() -> Result<[u8; 32], OtaError> {
    match option_env!("SMARTY_DONGLE_OTA_PUBLIC_KEY") {
        Some(hex) if !hex.trim().is_empty() => public_key_from_hex(hex),
        _ => Err(OtaError::NoPublicKey),
    }
}

/// Flash sector: erase granularity.
const SECTOR: u32 = 4096;

/// Why an update failed.
#[derive(Debug)]
pub enum Error {
    /// Partition table, OTA data or flash access.
    Flash(partitions::Error),
    /// The image is larger than the slot.
    TooLarge,
    /// Refused by the logic crate: no key in this build, a bad length or signature.
    Refused(OtaError),
    /// The upload was cut short.
    Network,
}

impl From<partitions::Error> for Error {
    fn from(error: partitions::Error) -> Self {
        Error::Flash(error)
    }
}

/// The state of the running image: `PendingVerify` (or `New`) on the first start after an
/// update, until [`confirm`] or [`reject`].
///
/// # Errors
///
/// When the partition table or the OTA data cannot be read.
pub fn running_state(flash: &mut FlashStorage<'_>) -> Result<OtaImageState, Error> {
    let mut table = [0_u8; PARTITION_TABLE_MAX_LEN];
    let mut updater = OtaUpdater::new(flash, &mut table)?;
    Ok(updater.current_ota_state()?)
}

/// Marks the running image as working: the bootloader keeps it.
///
/// # Errors
///
/// When the OTA data cannot be written.
pub fn confirm(flash: &mut FlashStorage<'_>) -> Result<(), Error> {
    set_running_state(flash, OtaImageState::Valid)
}

/// Marks the running image as broken: after a restart the bootloader goes back to the other
/// slot.
///
/// # Errors
///
/// When the OTA data cannot be written.
pub fn reject(flash: &mut FlashStorage<'_>) -> Result<(), Error> {
    set_running_state(flash, OtaImageState::Invalid)
}

fn set_running_state(flash: &mut FlashStorage<'_>, state: OtaImageState) -> Result<(), Error> {
    let mut table = [0_u8; PARTITION_TABLE_MAX_LEN];
    let mut updater = OtaUpdater::new(flash, &mut table)?;
    Ok(updater.set_current_ota_state(state)?)
}

impl From<OtaError> for Error {
    fn from(error: OtaError) -> Self {
        Error::Refused(error)
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Flash(e) => write!(f, "flash: {e:?}"),
            Error::TooLarge => f.write_str("the image is larger than the slot"),
            Error::Refused(e) => write!(f, "{e}"),
            Error::Network => f.write_str("the upload was cut short"),
        }
    }
}

/// An update being written into the next slot.
pub struct Update<'a, 'd> {
    updater: OtaUpdater<'a, 'd>,
    verifier: Verifier,
    written: u32,
}

impl<'a, 'd> Update<'a, 'd> {
    /// Starts the update `header` announces.
    ///
    /// # Errors
    ///
    /// When there are not two app slots, this build has no public key, or the image is empty,
    /// larger than the slot or its signature malformed.
    pub fn begin(
        flash: &'a mut FlashStorage<'d>,
        table: &'a mut [u8; PARTITION_TABLE_MAX_LEN],
        header: &[u8; HEADER_LEN],
    ) -> Result<Self, Error> {
        let key = public_key()?;
        let mut updater = OtaUpdater::new(flash, table)?;
        let (slot, _) = updater.next_partition()?;
        let max = u32::try_from(slot.partition_size()).unwrap_or(u32::MAX);
        let header = Header::parse(header, max)?;
        let verifier = Verifier::new(&key, &header)?;
        Ok(Update {
            updater,
            verifier,
            written: 0,
        })
    }

    /// Writes the next `chunk` of the image.
    ///
    /// # Errors
    ///
    /// When the image outgrows the slot or the flash fails.
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), Error> {
        let (mut slot, _) = self.updater.next_partition()?;
        let start = self.written;
        let end = start
            .checked_add(chunk.len() as u32)
            .filter(|end| *end as usize <= slot.partition_size())
            .ok_or(Error::TooLarge)?;
        // Erase each sector when the write first enters it.
        let first_new = start.div_ceil(SECTOR) * SECTOR;
        if end > first_new {
            let erase_end = end.div_ceil(SECTOR) * SECTOR;
            slot.erase(first_new, erase_end.min(slot.partition_size() as u32))?;
        }
        slot.write(start, chunk)?;
        self.verifier.update(chunk);
        self.written = end;
        Ok(())
    }

    /// Verifies the signature over everything written, then makes the slot the one to boot
    /// next (in state `New`: the next start must confirm it).
    ///
    /// # Errors
    ///
    /// When the signature does not verify (the slot stays inactive) or the flash fails.
    pub fn finish(mut self) -> Result<(), Error> {
        self.verifier.finish()?;
        self.updater.activate_next_partition()?;
        self.updater.set_current_ota_state(OtaImageState::New)?;
        Ok(())
    }
}

/// Takes signed uploads; restarts into the new image after a verified one.
#[embassy_executor::task]
pub async fn server(stack: Stack<'static>) {
    let mut rx = [0_u8; 2048];
    let mut tx = [0_u8; 64];
    loop {
        let mut socket = TcpSocket::new(stack, &mut rx, &mut tx);
        socket.set_timeout(Some(Duration::from_secs(30)));
        if socket.accept(PORT).await.is_err() {
            continue;
        }
        let result = receive(&mut socket).await;
        let reply = match &result {
            Ok(()) => alloc::string::String::from("OK\n"),
            Err(error) => alloc::format!("ERR {error}\n"),
        };
        log::info!("OTA: upload {}", reply.trim_end());
        let _ = socket.write_all(reply.as_bytes()).await;
        let _ = socket.flush().await;
        socket.close();
        if result.is_ok() {
            crate::restart_soon();
        }
        socket.abort();
    }
}

/// Reads one upload from `socket` into the next slot.
async fn receive(socket: &mut TcpSocket<'_>) -> Result<(), Error> {
    let mut header = [0_u8; HEADER_LEN];
    socket
        .read_exact(&mut header)
        .await
        .map_err(|_| Error::Network)?;
    let mut flash = crate::FLASH.get().await.lock().await;
    let mut table = [0_u8; PARTITION_TABLE_MAX_LEN];
    let mut update = Update::begin(&mut flash, &mut table, &header)?;
    let mut chunk = [0_u8; 1024];
    while update.verifier.left() > 0 {
        let want = (update.verifier.left() as usize).min(chunk.len());
        let n = socket
            .read(&mut chunk[..want])
            .await
            .map_err(|_| Error::Network)?;
        if n == 0 {
            return Err(Error::Network);
        }
        update.write(&chunk[..n])?;
    }
    update.finish()
}
