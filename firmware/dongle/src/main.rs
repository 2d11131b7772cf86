//! Firmware of the smarty P1 dongle, for the ESP32-C3 (default) and the ESP32-C6 (feature
//! `esp32c6`): reads the meter's P1 port, decrypts and decodes each telegram with
//! `smarty-p1`, and passes it on over Wi-Fi (MQTT, a read-only JSON API on port 80, the
//! plain telegram on TCP port 2001). Without settings it opens a set-up access point with a
//! captive portal. This crate is glue between the logic (`smarty-dongle`, tested on the host)
//! and esp-hal; see `firmware/README.md`.

#![no_std]
#![no_main]

extern crate alloc;

mod http;
mod mqtt;
mod net;
mod ota;
mod p1;
mod settings;
mod state;
mod stream;

use embassy_executor::Spawner;
use embassy_sync::{
    blocking_mutex::raw::CriticalSectionRawMutex, mutex::Mutex, once_lock::OnceLock, signal::Signal,
};
use embassy_time::{Duration, Instant, Timer, with_timeout};
use esp_backtrace as _;
use esp_bootloader_esp_idf::{ota::OtaImageState, partitions::FlashStorage};
use esp_hal::{
    clock::CpuClock,
    gpio::Pin as _,
    rng::Rng,
    rtc_cntl::{Rtc, RwdtStage},
    timer::timg::TimerGroup,
};
use esp_radio::wifi::WifiController;
use smarty_p1::Key;

// The app descriptor the second-stage bootloader checks (and OTA reports).
esp_bootloader_esp_idf::esp_app_desc!();

/// The flash, shared by the settings and the updates.
pub static FLASH: OnceLock<Mutex<CriticalSectionRawMutex, FlashStorage<'static>>> = OnceLock::new();

/// Set when the dongle should restart (new settings saved).
static RESTART: Signal<CriticalSectionRawMutex, ()> = Signal::new();

/// Asks the main loop to restart the dongle in about a second (after the reply went out).
pub fn restart_soon() {
    RESTART.signal(());
}

/// The radio starts this long after boot: the supply (the P1 port's 250 mA, through the
/// board's capacitor) settles first, and the P1 reader is already running.
const RADIO_DELAY: Duration = Duration::from_secs(2);
/// The watchdog resets the dongle when the main loop stops feeding it for this long.
const WATCHDOG_S: u64 = 30;
/// A new image that gets no network within this time is rolled back.
const CONFIRM_WITHIN: Duration = Duration::from_secs(300);

/// Starts the dongle.
#[esp_rtos::main]
async fn main(spawner: Spawner) -> ! {
    esp_println::logger::init_logger_from_env();
    let peripherals = esp_hal::init(esp_hal::Config::default().with_cpu_clock(CpuClock::max()));
    // Wi-Fi's buffers and the decoder share the heap: the bootloader's reclaimed RAM first.
    esp_alloc::heap_allocator!(#[esp_hal::ram(reclaimed)] size: 64 * 1024);
    esp_alloc::heap_allocator!(size: 40 * 1024);

    let mut rtc = Rtc::new(peripherals.RTC_TIMER);
    rtc.rwdt.set_timeout(
        RwdtStage::Stage0,
        esp_hal::time::Duration::from_secs(WATCHDOG_S),
    );
    rtc.rwdt.enable();

    let timg0 = TimerGroup::new(peripherals.TIMG0);
    esp_rtos::start(timg0.timer0, peripherals.FROM_CPU_INTR0);
    log::info!("smarty dongle {}", env!("CARGO_PKG_VERSION"));

    let flash = FLASH.get_or_init(|| Mutex::new(FlashStorage::new(peripherals.FLASH)));
    let settings = match settings::load(&mut *flash.lock().await).await {
        Ok(settings) => settings,
        Err(error) => {
            log::warn!("settings: {error:?}");
            None
        }
    };
    let key = settings
        .as_ref()
        .filter(|s| !s.meter_key.is_empty())
        .and_then(|s| Key::from_hex(&s.meter_key).ok());

    // The P1 port: GPIO5 on both chips (TODO: per board).
    match p1::uart(peripherals.UART1, peripherals.GPIO5.degrade()) {
        Ok(rx) => spawner.spawn(p1::reader(rx, key).expect("P1 task")),
        Err(error) => log::error!("P1: UART: {error:?}"),
    }

    Timer::after(RADIO_DELAY).await;
    let seed = {
        let rng = Rng::new();
        (u64::from(rng.random()) << 32) | u64::from(rng.random())
    };
    let mut controller =
        WifiController::new(peripherals.WIFI, Default::default()).expect("Wi-Fi controller");

    let stack = match &settings {
        Some(settings) => match net::station(&mut controller, settings, seed) {
            Ok((stack, runner)) => {
                spawner.spawn(net::runner(runner).expect("net task"));
                spawner.spawn(net::keep_connected(controller).expect("Wi-Fi task"));
                spawner.spawn(mqtt::publisher(stack, settings.clone()).expect("MQTT task"));
                spawner.spawn(http::api(stack).expect("API task"));
                spawner.spawn(stream::server(stack).expect("stream task"));
                spawner.spawn(stream::server(stack).expect("stream task"));
                spawner.spawn(ota::server(stack).expect("OTA task"));
                Some(stack)
            }
            Err(error) => {
                log::error!("Wi-Fi: {error:?}");
                None
            }
        },
        None => match net::access_point(&mut controller, seed) {
            Ok((stack, runner)) => {
                spawner.spawn(net::runner(runner).expect("net task"));
                spawner.spawn(net::dhcp_server(stack).expect("DHCP task"));
                spawner.spawn(net::dns_server(stack).expect("DNS task"));
                spawner.spawn(http::portal(stack).expect("portal task"));
                // The controller must live as long as the access point.
                core::mem::forget(controller);
                None
            }
            Err(error) => {
                log::error!("Wi-Fi: {error:?}");
                None
            }
        },
    };

    // A new image confirms itself once it reached the network, or is rolled back.
    let pending = matches!(
        ota::running_state(&mut *flash.lock().await),
        Ok(OtaImageState::New | OtaImageState::PendingVerify)
    );
    let boot = Instant::now();
    let mut confirmed = !pending;

    loop {
        rtc.rwdt.feed();
        if with_timeout(Duration::from_secs(5), RESTART.wait())
            .await
            .is_ok()
        {
            Timer::after(Duration::from_secs(1)).await;
            esp_hal::system::software_reset();
        }
        if !confirmed {
            let up = stack.is_some_and(|s| s.is_config_up());
            let mut flash = flash.lock().await;
            if up {
                confirmed = ota::confirm(&mut flash).is_ok();
                log::info!("OTA: image confirmed");
            } else if boot.elapsed() > CONFIRM_WITHIN {
                log::error!("OTA: no network with the new image: rolling back");
                let _ = ota::reject(&mut flash);
                esp_hal::system::software_reset();
            }
        }
    }
}
