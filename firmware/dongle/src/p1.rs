//! The P1 port: UART1 receiving at 115200 8N1 with the RX signal inverted in the GPIO matrix
//! (the meter's data line is open-collector with inverted logic: idle is low), fed into
//! [`smarty_p1::Decoder`], each telegram published to [`crate::state`].
//!
//! TODO(merge h-fw-logic): the logic crate's P1 reader turns decoded telegrams into
//! publications (state JSON, Home Assistant values); [`snapshot`] stands in for it here.

use alloc::{format, string::String, vec::Vec};
use core::fmt::Write as _;

use embassy_time::Instant;
use esp_hal::{
    Async,
    gpio::{AnyPin, interconnect::InputSignal},
    uart::{self, RxConfig, UartRx},
};
use smarty_p1::{Decoded, Decoder, DecoderConfig, Key, Readings};

use crate::state::{self, Snapshot};

/// Bytes read from the UART at a time: its FIFO holds 128.
const CHUNK: usize = 128;

/// Sets up UART1's receiver on `pin` with the signal inverted.
///
/// # Errors
///
/// When the UART does not accept the configuration.
pub fn uart(
    uart1: esp_hal::peripherals::UART1<'static>,
    pin: AnyPin<'static>,
) -> Result<UartRx<'static, Async>, uart::ConfigError> {
    // The meter's mark (1, idle) is a low level on its open collector: invert in the matrix.
    let rx = InputSignal::from(pin).with_input_inverter(true);
    let config = uart::Config::default()
        .with_baudrate(115_200)
        .with_data_bits(uart::DataBits::_8)
        .with_parity(uart::Parity::None)
        .with_stop_bits(uart::StopBits::_1)
        // Wake the task when 64 bytes wait, or after 10 idle symbols.
        .with_rx(
            RxConfig::default()
                .with_fifo_full_threshold(64)
                .with_timeout(10),
        );
    Ok(UartRx::new(uart1, config)?.with_rx(rx).into_async())
}

/// Reads the P1 port forever: decodes with `key` (`None`: a plain DSMR meter).
#[embassy_executor::task]
pub async fn reader(mut rx: UartRx<'static, Async>, key: Option<Key>) {
    let mut decoder = Decoder::new(DecoderConfig::default().with_key(key));
    let mut buffer = [0_u8; CHUNK];
    loop {
        let n = match rx.read_async(&mut buffer).await {
            Ok(n) => n,
            Err(error) => {
                log::warn!("P1: UART error {error:?}");
                state::count(true);
                continue;
            }
        };
        let now_ms = Instant::now().as_millis();
        decoder.push_at(&buffer[..n], now_ms);
        while let Some(result) = decoder.next() {
            match result {
                Ok(decoded) => state::publish(snapshot(&decoded), now_ms),
                Err(rejection) => {
                    log::warn!("P1: {rejection}");
                    state::count(false);
                }
            }
        }
    }
}

/// What the outputs need of a decoded telegram.
fn snapshot(decoded: &Decoded<'_>) -> Snapshot {
    let readings = decoded.telegram.readings();
    Snapshot {
        meter_id: readings.meter_id.clone().unwrap_or_default(),
        json: readings_json(&readings),
        telegram: Vec::from(decoded.telegram.raw()),
    }
}

/// The common readings as a JSON object; absent values are left out.
fn readings_json(readings: &Readings) -> String {
    let mut json = String::from("{");
    let mut field = |name: &str, value: Option<String>| {
        if let Some(value) = value {
            if json.len() > 1 {
                json.push(',');
            }
            let _ = write!(json, "\"{name}\":{value}");
        }
    };
    field(
        "meter_id",
        readings
            .meter_id
            .as_ref()
            .map(|id| format!("\"{}\"", escape(id))),
    );
    field(
        "energy_import_kwh",
        readings.energy_import_kwh.map(|v| format!("{v}")),
    );
    field(
        "energy_export_kwh",
        readings.energy_export_kwh.map(|v| format!("{v}")),
    );
    field(
        "power_import_kw",
        readings.power_import_kw.map(|v| format!("{v}")),
    );
    field(
        "power_export_kw",
        readings.power_export_kw.map(|v| format!("{v}")),
    );
    json.push('}');
    json
}

/// `text` with JSON's special characters escaped (meter ids are printable ASCII).
fn escape(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .flat_map(|c| match c {
            '"' | '\\' => ['\\', c].into_iter().take(2),
            c => [c, c].into_iter().take(1),
        })
        .collect()
}
