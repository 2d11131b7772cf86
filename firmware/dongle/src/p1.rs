//! The P1 port: UART1 receiving at 115200 8N1 with the RX signal inverted in the GPIO matrix
//! (the meter's data line is open-collector with inverted logic: idle is low), fed into the
//! logic crate's [`smarty_dongle::p1::Reader`] (decryption, decoding, counters, diagnosis);
//! each accepted telegram is published to [`crate::state`].

use embassy_time::{Duration, with_timeout};
use esp_hal::{
    Async,
    gpio::{AnyPin, interconnect::InputSignal},
    uart::{self, RxConfig, UartRx},
};
use smarty_dongle::p1::Reader;
use smarty_p1::DecoderConfig;

use crate::state;

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

/// The reader advances its clock at least this often without bytes, so that a frame cut
/// short is dropped and the diagnosis sees the silence.
const IDLE_TICK: Duration = Duration::from_secs(1);

/// Reads the P1 port forever, decoding with `config` (the settings' key and authentication
/// key; none: a plain DSMR meter).
#[embassy_executor::task]
pub async fn reader(mut rx: UartRx<'static, Async>, config: DecoderConfig) {
    {
        let mut reader = Reader::new(config);
        reader.start(state::now_ms());
        *state::READER.lock().await = Some(reader);
    }
    let mut buffer = [0_u8; CHUNK];
    loop {
        let n = match with_timeout(IDLE_TICK, rx.read_async(&mut buffer)).await {
            Ok(Ok(n)) => n,
            Ok(Err(error)) => {
                // Framing/parity errors and FIFO overflows: the decoder's CRC and framing
                // checks catch what they damaged, and the counters show it.
                log::warn!("P1: UART error {error:?}");
                0
            }
            Err(_) => 0,
        };
        let mut guard = state::READER.lock().await;
        let Some(reader) = guard.as_mut() else {
            continue;
        };
        reader.push(&buffer[..n], state::now_ms());
        while let Some(result) = reader.poll() {
            match result {
                Ok(snapshot) => state::publish(snapshot),
                Err(rejection) => log::warn!("P1: {rejection}"),
            }
        }
    }
}
