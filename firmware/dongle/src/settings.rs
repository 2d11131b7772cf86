//! The dongle's settings, kept in the flash's `nvs` data partition with sequential-storage
//! (wear-levelled, power-loss safe). The partition is found in the partition table
//! (`partitions.csv`); ESP-IDF's NVS format is not used (esp-radio keeps nothing there).
//!
//! TODO(merge h-fw-logic): the settings record and its encoding belong to the logic crate
//! (`smarty_dongle`'s settings record, validated and versioned); [`Settings`] with its
//! `key=value` lines stands in for it here, with the same fields.

use alloc::{string::String, vec::Vec};

use embassy_embedded_hal::adapter::BlockingAsync;
use esp_bootloader_esp_idf::partitions::{
    self, DataPartitionSubType, FlashStorage, PARTITION_TABLE_MAX_LEN, PartitionType,
};
use sequential_storage::{
    cache::{Cache, Uncached},
    map::{MapConfig, MapStorage},
};

/// The map key of the settings record.
const RECORD: u8 = 1;
/// The largest record, plus the key and alignment.
const BUFFER: usize = 1024;

/// What the set-up form asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// The Wi-Fi network to join.
    pub wifi_ssid: String,
    /// Its WPA2 passphrase (empty: an open network).
    pub wifi_password: String,
    /// The meter's decryption key, 32 hex digits; empty for a plain DSMR meter.
    pub meter_key: String,
    /// The MQTT broker's host name or IPv4 address; empty: no MQTT.
    pub mqtt_host: String,
    /// The MQTT broker's port.
    pub mqtt_port: u16,
    /// The MQTT user name (empty: none).
    pub mqtt_user: String,
    /// The MQTT password.
    pub mqtt_password: String,
}

impl Settings {
    /// The record as stored: one `name=value` line per field.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = String::new();
        for (name, value) in [
            ("wifi_ssid", self.wifi_ssid.as_str()),
            ("wifi_password", self.wifi_password.as_str()),
            ("meter_key", self.meter_key.as_str()),
            ("mqtt_host", self.mqtt_host.as_str()),
            ("mqtt_user", self.mqtt_user.as_str()),
            ("mqtt_password", self.mqtt_password.as_str()),
        ] {
            out.push_str(name);
            out.push('=');
            out.push_str(value);
            out.push('\n');
        }
        out.push_str("mqtt_port=");
        out.push_str(itoa(self.mqtt_port).as_str());
        out.push('\n');
        out.into_bytes()
    }

    /// Reads a record written by [`Settings::encode`]; `None` when it has no Wi-Fi network.
    pub fn decode(record: &[u8]) -> Option<Settings> {
        let text = core::str::from_utf8(record).ok()?;
        let mut settings = Settings {
            mqtt_port: 1883,
            ..Settings::default()
        };
        for line in text.lines() {
            let (name, value) = line.split_once('=')?;
            let value = String::from(value);
            match name {
                "wifi_ssid" => settings.wifi_ssid = value,
                "wifi_password" => settings.wifi_password = value,
                "meter_key" => settings.meter_key = value,
                "mqtt_host" => settings.mqtt_host = value,
                "mqtt_user" => settings.mqtt_user = value,
                "mqtt_password" => settings.mqtt_password = value,
                "mqtt_port" => settings.mqtt_port = value.parse().ok()?,
                _ => {}
            }
        }
        (!settings.wifi_ssid.is_empty()).then_some(settings)
    }
}

fn itoa(n: u16) -> String {
    alloc::format!("{n}")
}

/// Why the settings could not be read or written.
#[derive(Debug)]
pub enum Error {
    /// The partition table has no `nvs` data partition, or cannot be read.
    Partition(#[allow(dead_code, reason = "read through Debug in log messages")] partitions::Error),
    /// sequential-storage failed (flash error, corrupted pages).
    Storage,
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
/// When the partition is missing or the flash fails.
pub async fn load(flash: &mut FlashStorage<'_>) -> Result<Option<Settings>, Error> {
    with_map(flash, async |map| {
        let mut buffer = [0_u8; BUFFER];
        match map.fetch_item::<&[u8]>(&mut buffer, &RECORD).await {
            Ok(Some(record)) => Ok(Settings::decode(record)),
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
    let record = settings.encode();
    with_map(flash, async |map| {
        let mut buffer = [0_u8; BUFFER];
        map.store_item(&mut buffer, &RECORD, &record.as_slice())
            .await
            .map_err(|_| Error::Storage)
    })
    .await?
}
