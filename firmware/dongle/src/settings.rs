//! The dongle's settings in the flash's `nvs` data partition, with sequential-storage
//! (wear-levelled, power-loss safe) as the storage layer. The partition is found in the
//! partition table (`partitions.csv`); ESP-IDF's NVS format is not used (esp-radio keeps
//! nothing there).
//!
//! Two items in the map:
//!
//! - [`RECORD`]: the logic crate's settings record ([`Settings::encode`], versioned and
//!   CRC-checked), stored whole; erasing it is the factory reset;
//! - [`AP_PASSWORD`]: the set-up access point's per-device password, made at the first start
//!   and kept through factory resets.

use alloc::{string::String, vec::Vec};

use embassy_embedded_hal::adapter::BlockingAsync;
use esp_bootloader_esp_idf::partitions::{
    self, DataPartitionSubType, FlashStorage, PARTITION_TABLE_MAX_LEN, PartitionType,
};
use sequential_storage::{
    cache::{Cache, Uncached},
    map::{MapConfig, MapStorage},
};
use smarty_dongle::settings::{Settings, SettingsError};

/// The map key of the settings record.
const RECORD: u8 = 1;
/// The map key of the set-up access point's password.
const AP_PASSWORD: u8 = 2;
/// The largest item, plus the key and alignment: a record is a few hundred bytes (texts are
/// validated short).
const BUFFER: usize = 1024;

/// Why the settings could not be read or written.
#[derive(Debug)]
pub enum Error {
    /// The partition table has no `nvs` data partition, or cannot be read.
    Partition(partitions::Error),
    /// sequential-storage failed (flash error, corrupted pages).
    Storage,
    /// The stored record is not valid (damaged, or of another format version).
    Record(SettingsError),
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Partition(e) => write!(f, "the nvs partition: {e:?}"),
            Error::Storage => f.write_str("the flash storage failed"),
            Error::Record(e) => write!(f, "the stored settings: {e}"),
        }
    }
}

/// Runs `f` on the settings map in the `nvs` partition of `flash`.
async fn with_map<R>(
    flash: &mut FlashStorage<'_>,
    f: impl AsyncFnOnce(
        &mut MapStorage<
            u8,
            BlockingAsync<partitions::NorFlashRegion<'_, '_, '_>>,
            Cache<Uncached, Uncached, Uncached, u8>,
        >,
    ) -> R,
) -> Result<R, Error> {
    let mut table = [0_u8; PARTITION_TABLE_MAX_LEN];
    let table = partitions::read_partition_table(flash, &mut table).map_err(Error::Partition)?;
    let entry = table
        .find_partition(PartitionType::Data(DataPartitionSubType::Nvs))
        .map_err(Error::Partition)?
        .ok_or(Error::Partition(partitions::Error::Invalid))?;
    let len = entry.len();
    let mut region = entry.as_flash_region(flash);
    let nor = region.as_nor_flash().map_err(Error::Partition)?;
    let mut map = MapStorage::new(
        BlockingAsync::new(nor),
        MapConfig::new(0..len),
        Cache::new_uncached(),
    );
    Ok(f(&mut map).await)
}

/// The stored settings; `Ok(None)` when none are stored (first start, or after a reset).
///
/// # Errors
///
/// When the partition is missing, the flash fails or the record is not valid.
pub async fn load(flash: &mut FlashStorage<'_>) -> Result<Option<Settings>, Error> {
    with_map(flash, async |map| {
        let mut buffer = [0_u8; BUFFER];
        match map.fetch_item::<&[u8]>(&mut buffer, &RECORD).await {
            Ok(Some(record)) => Settings::decode(record).map_err(Error::Record),
            Ok(None) => Ok(None),
            Err(_) => Err(Error::Storage),
        }
    })
    .await?
}

/// Stores `settings`, replacing what was there.
///
/// # Errors
///
/// When the partition is missing or the flash fails.
pub async fn store(flash: &mut FlashStorage<'_>, settings: &Settings) -> Result<(), Error> {
    store_item(flash, RECORD, &settings.encode()).await
}

/// Erases the settings (the factory reset); the access point's password stays.
///
/// # Errors
///
/// When the partition is missing or the flash fails.
pub async fn erase(flash: &mut FlashStorage<'_>) -> Result<(), Error> {
    with_map(flash, async |map| {
        let mut buffer = [0_u8; BUFFER];
        map.remove_item(&mut buffer, &RECORD)
            .await
            .map_err(|_| Error::Storage)
    })
    .await?
}

/// The set-up access point's password: the stored one, or a new one made with `random`
/// (the hardware generator) and stored, at the first start or when the stored one is not
/// valid.
///
/// # Errors
///
/// When the partition is missing or the flash fails (the caller can still use a password of
/// this start only).
pub async fn ap_password(
    flash: &mut FlashStorage<'_>,
    random: impl Iterator<Item = u8>,
) -> Result<String, Error> {
    let stored = with_map(flash, async |map| {
        let mut buffer = [0_u8; BUFFER];
        match map.fetch_item::<&[u8]>(&mut buffer, &AP_PASSWORD).await {
            Ok(item) => Ok(item
                .and_then(|bytes| core::str::from_utf8(bytes).ok())
                .filter(|text| smarty_dongle::access_point::is_password(text))
                .map(String::from)),
            Err(_) => Err(Error::Storage),
        }
    })
    .await??;
    if let Some(password) = stored {
        return Ok(password);
    }
    let password = smarty_dongle::access_point::password_from(random).ok_or(Error::Storage)?;
    store_item(flash, AP_PASSWORD, password.as_bytes()).await?;
    log::info!("set-up access point: new password made and stored");
    Ok(password)
}

async fn store_item(flash: &mut FlashStorage<'_>, key: u8, item: &[u8]) -> Result<(), Error> {
    let item: Vec<u8> = item.to_vec();
    with_map(flash, async |map| {
        let mut buffer = [0_u8; BUFFER];
        map.store_item(&mut buffer, &key, &item.as_slice())
            .await
            .map_err(|_| Error::Storage)
    })
    .await?
}
