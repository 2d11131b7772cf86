//! Firmware of the smarty P1 dongle, for the ESP32-C3 (default) and the ESP32-C6 (feature
//! `esp32c6`): reads the meter's P1 port, decrypts and decodes each telegram with
//! `smarty-p1`, and passes it on over Wi-Fi (MQTT, a read-only JSON API on port 80, the
//! plain telegram on TCP port 2001). Without settings it opens a set-up access point with a
//! captive portal. This crate is glue between the logic (`smarty-dongle`, tested on the host)
//! and esp-hal; see `firmware/README.md`.
//!
//! The control loop in [`main`] runs the logic crate's connection state machine
//! ([`provisioning::next`]): the Wi-Fi, MQTT and button tasks send it [`Event`]s, it carries
//! out the [`Action`]s (commands to those tasks, its one timer, the factory reset).

#![no_std]
#![no_main]

extern crate alloc;

mod button;
mod http;
mod mqtt;
mod net;
mod ota;
mod p1;
mod settings;
mod state;
mod stream;

use embassy_executor::Spawner;
use embassy_futures::select::{Either4, select4};
use embassy_sync::{
    blocking_mutex::raw::CriticalSectionRawMutex, mutex::Mutex, once_lock::OnceLock, signal::Signal,
};
use embassy_time::{Duration, Instant, Timer};
use esp_backtrace as _;
use esp_bootloader_esp_idf::{ota::OtaImageState, partitions::FlashStorage};
use esp_hal::{
    clock::CpuClock,
    gpio::Pin as _,
    rng::{Rng, Trng, TrngSource},
    rtc_cntl::{Rtc, RwdtStage},
    timer::timg::TimerGroup,
};
use esp_radio::wifi::{Interface, WifiController};
use smarty_dongle::provisioning::{self, Action, Event, State};

use crate::state::{BrokerCommand, WifiCommand};

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
    log::info!("smarty dongle {}", smarty_dongle::VERSION);

    let flash = FLASH.get_or_init(|| Mutex::new(FlashStorage::new(peripherals.FLASH)));
    let settings = match settings::load(&mut *flash.lock().await).await {
        Ok(settings) => settings,
        Err(error) => {
            log::warn!("settings: {error}; set-up access point");
            None
        }
    };
    let decoder = settings
        .as_ref()
        .map(|s| s.decoder_config())
        .unwrap_or_default();
    let has_settings = settings.is_some();
    let _ = state::SETTINGS.init(settings);

    // The P1 port: GPIO5 on both chips (TODO: per board).
    match p1::uart(peripherals.UART1, peripherals.GPIO5.degrade()) {
        Ok(rx) => spawner.spawn(p1::reader(rx, decoder).expect("P1 task")),
        Err(error) => log::error!("P1: UART: {error:?}"),
    }
    // The BOOT button: GPIO9 on the C3 and C6 boards.
    spawner.spawn(button::watch(peripherals.GPIO9.degrade()).expect("button task"));

    // Randomness for the access point's password and the network stacks, from the hardware
    // generator with the SAR ADC as entropy source (the radio is not on yet); the source is
    // released before the radio starts, which becomes the entropy source from then on.
    let (password, seed) = {
        let source = TrngSource::new(peripherals.RNG, peripherals.ADC1);
        let trng = Trng::try_new().expect("the entropy source is on");
        let random = core::iter::repeat_with(|| trng.random().to_le_bytes()).flatten();
        let password = settings::ap_password(&mut *flash.lock().await, random).await;
        let seed = (u64::from(trng.random()) << 32) | u64::from(trng.random());
        drop(trng);
        drop(source);
        (password, seed)
    };

    Timer::after(RADIO_DELAY).await;
    let controller =
        WifiController::new(peripherals.WIFI, Default::default()).expect("Wi-Fi controller");
    let mac = Interface::station().mac_address();
    let _ = state::MAC_SUFFIX.init(smarty_dongle::access_point::mac_suffix(mac));
    let password = password.unwrap_or_else(|error| {
        // Flash trouble: a password of this start only, still per device and random.
        log::error!("set-up access point: password not stored: {error}");
        let trng = Rng::new();
        let random = core::iter::repeat_with(|| trng.random().to_le_bytes()).flatten();
        smarty_dongle::access_point::password_from(random).unwrap_or_default()
    });
    let _ = state::ACCESS_POINT.init(state::AccessPoint {
        ssid: smarty_dongle::access_point::ssid(mac),
        password,
    });

    let ((station, station_runner), (ap, ap_runner)) = net::stacks(seed);
    spawner.spawn(net::runner(station_runner).expect("net task"));
    spawner.spawn(net::runner(ap_runner).expect("net task"));
    spawner.spawn(net::wifi(controller, station).expect("Wi-Fi task"));
    // The home network's outputs (idle until the station has an address).
    spawner.spawn(mqtt::client(station).expect("MQTT task"));
    spawner.spawn(http::server(station, http::Face::Home).expect("HTTP task"));
    spawner.spawn(stream::server(station).expect("stream task"));
    spawner.spawn(stream::server(station).expect("stream task"));
    spawner.spawn(ota::server(station).expect("OTA task"));
    // The set-up access point's services (idle until it opens).
    spawner.spawn(net::dhcp_server(ap).expect("DHCP task"));
    spawner.spawn(net::dns_server(ap).expect("DNS task"));
    spawner.spawn(http::server(ap, http::Face::Setup).expect("HTTP task"));

    // A new image confirms itself once it reached the network, or is rolled back.
    let pending = matches!(
        ota::running_state(&mut *flash.lock().await),
        Ok(OtaImageState::New | OtaImageState::PendingVerify)
    );
    let boot = Instant::now();
    let mut confirmed = !pending;

    let mut control = Control {
        state: State::Start,
        timer: None,
    };
    control.handle(Event::Booted { has_settings }).await;
    loop {
        rtc.rwdt.feed();
        let timer = async {
            match control.timer {
                Some(at) => Timer::at(at).await,
                None => core::future::pending().await,
            }
        };
        match select4(
            state::EVENTS.receive(),
            timer,
            RESTART.wait(),
            Timer::after(Duration::from_secs(5)),
        )
        .await
        {
            Either4::First(event) => control.handle(event).await,
            Either4::Second(()) => {
                control.timer = None;
                control.handle(Event::TimerFired).await;
            }
            Either4::Third(()) => {
                Timer::after(Duration::from_secs(1)).await;
                esp_hal::system::software_reset();
            }
            Either4::Fourth(()) => {}
        }
        if !confirmed {
            let up = station.is_config_up();
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

/// The control loop's state: the state machine's, and its one timer.
struct Control {
    state: State,
    timer: Option<Instant>,
}

impl Control {
    /// Feeds `event` to the state machine and carries out its actions.
    async fn handle(&mut self, event: Event) {
        let (next, actions) = provisioning::next(self.state, event);
        if next != self.state {
            log::info!("{} --{event:?}--> {}", self.state.as_str(), next.as_str());
        }
        self.state = next;
        state::update(|c| c.state = next);
        for action in actions {
            self.act(action).await;
        }
    }

    async fn act(&mut self, action: Action) {
        match action {
            Action::StartAccessPoint => state::WIFI.send(WifiCommand::StartAccessPoint).await,
            Action::StopAccessPoint => state::WIFI.send(WifiCommand::StopAccessPoint).await,
            Action::JoinWifi => state::WIFI.send(WifiCommand::Join).await,
            Action::LeaveWifi => state::WIFI.send(WifiCommand::Leave).await,
            Action::ConnectBroker => state::BROKER.signal(BrokerCommand::Connect),
            Action::DisconnectBroker => state::BROKER.signal(BrokerCommand::Disconnect),
            Action::StartTimer { ms } => {
                self.timer = Some(Instant::now() + Duration::from_millis(ms));
            }
            Action::CancelTimer => self.timer = None,
            Action::EraseSettings => {
                let erased = {
                    let mut flash = FLASH.get().await.lock().await;
                    settings::erase(&mut flash).await
                };
                match erased {
                    // Start afresh without settings (the set-up access point, a plain
                    // reader): simpler than undoing the settings in every task.
                    Ok(()) => {
                        log::warn!("factory reset: settings erased; restarting");
                        restart_soon();
                    }
                    Err(error) => log::error!("factory reset: cannot erase: {error}"),
                }
            }
            // A newer logic crate's action this firmware does not know yet.
            _ => log::warn!("control: {action:?} not carried out"),
        }
    }
}
