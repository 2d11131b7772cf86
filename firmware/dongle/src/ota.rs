//! Updates over the air into the other of two app slots (`ota_0`, `ota_1` in
//! `partitions.csv`), activated only when the image's ed25519 signature verifies, and
//! confirmed (or rolled back) on the first start from the new slot.
//!
//! An upload is the 64-byte signature followed by the image (what `espflash save-image`
//! writes); the signature covers the image. [`Update`] writes the image into the next slot
//! while hashing it, and activates the slot only after [`Update::finish`] verified it.
//!
//! [`server`] takes uploads on TCP port [`PORT`]: the 64-byte signature, the image's length
//! (4 bytes, big-endian), the image; it answers `OK` (and restarts into the new slot) or
//! `ERR …`. Only the signature authenticates an upload.
//!
//! TODO: [`PUBLIC_KEY`] is a placeholder: with it every signature fails, so no image can be
//! activated until the project's release key is set (and a signing step in the release).

use ed25519_compact::{PublicKey, Signature, VerifyingState};
use embassy_net::{Stack, tcp::TcpSocket};
use embassy_time::Duration;
use embedded_io_async::{Read as _, Write as _};
use esp_bootloader_esp_idf::{
    ota::OtaImageState,
    ota_updater::OtaUpdater,
    partitions::{self, FlashStorage, PARTITION_TABLE_MAX_LEN},
};

/// The release signing key's public half. TODO: the project's release key.
pub const PUBLIC_KEY: [u8; 32] = [0; 32];
/// Flash sector: erase granularity.
const SECTOR: u32 = 4096;

/// Why an update failed.
#[derive(Debug)]
pub enum Error {
    /// Partition table, OTA data or flash access.
    Flash(#[allow(dead_code, reason = "read through Debug in log messages")] partitions::Error),
    /// The image is larger than the slot.
    TooLarge,
    /// The signature is malformed or does not verify.
    Signature,
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

/// An update being written into the next slot.
pub struct Update<'a, 'd> {
    updater: OtaUpdater<'a, 'd>,
    verifier: VerifyingState,
    written: u32,
}

impl<'a, 'd> Update<'a, 'd> {
    /// Starts an update whose image is signed with `signature`.
    ///
    /// # Errors
    ///
    /// When there are not two app slots, or the signature is malformed.
    pub fn begin(
        flash: &'a mut FlashStorage<'d>,
        table: &'a mut [u8; PARTITION_TABLE_MAX_LEN],
        signature: &[u8; 64],
    ) -> Result<Self, Error> {
        let updater = OtaUpdater::new(flash, table)?;
        let key = PublicKey::new(PUBLIC_KEY);
        let verifier = key
            .verify_incremental(&Signature::new(*signature))
            .map_err(|_| Error::Signature)?;
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
        self.verifier.absorb(chunk);
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
        self.verifier.verify().map_err(|_| Error::Signature)?;
        self.updater.activate_next_partition()?;
        self.updater.set_current_ota_state(OtaImageState::New)?;
        Ok(())
    }
}

/// The upload port (the one ArduinoOTA uses).
pub const PORT: u16 = 3232;

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
            Err(error) => alloc::format!("ERR {error:?}\n"),
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
    let mut signature = [0_u8; 64];
    let mut length = [0_u8; 4];
    socket
        .read_exact(&mut signature)
        .await
        .map_err(|_| Error::Network)?;
    socket
        .read_exact(&mut length)
        .await
        .map_err(|_| Error::Network)?;
    let mut left = u32::from_be_bytes(length) as usize;
    let mut flash = crate::FLASH.get().await.lock().await;
    let mut table = [0_u8; PARTITION_TABLE_MAX_LEN];
    let mut update = Update::begin(&mut flash, &mut table, &signature)?;
    let mut chunk = [0_u8; 1024];
    while left > 0 {
        let n = socket
            .read(&mut chunk[..left.min(1024)])
            .await
            .map_err(|_| Error::Network)?;
        if n == 0 {
            return Err(Error::Network);
        }
        update.write(&chunk[..n])?;
        left -= n;
    }
    update.finish()
}
