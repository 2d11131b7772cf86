//! The BOOT button (GPIO9 on the ESP32-C3 and ESP32-C6 boards; it pulls the pin low): how
//! long it was held goes to the control loop as [`Event::ButtonReleased`], which decides
//! ([`smarty_dongle::provisioning`]): held 5 s or more, a factory reset (the settings are
//! erased); shorter, the set-up access point opens (the settings kept).

use embassy_time::{Duration, Instant, Timer};
use esp_hal::gpio::{AnyPin, Input, InputConfig, Pull};
use smarty_dongle::provisioning::{Event, Policy};

use crate::state;

/// Presses shorter than this are contact bounce or noise.
const DEBOUNCE: Duration = Duration::from_millis(50);

/// Watches the button on `pin` (pulled up; pressed is low).
#[embassy_executor::task]
pub async fn watch(pin: AnyPin<'static>) {
    let mut button = Input::new(pin, InputConfig::default().with_pull(Pull::Up));
    let long_press_ms = Policy::default().long_press_ms;
    loop {
        button.wait_for_low().await;
        let pressed = Instant::now();
        Timer::after(DEBOUNCE).await;
        if button.is_high() {
            continue;
        }
        // Say on the console when a held button has become a factory reset.
        let long = Timer::after(Duration::from_millis(long_press_ms));
        if let embassy_futures::select::Either::Second(()) =
            embassy_futures::select::select(button.wait_for_high(), long).await
        {
            log::warn!("button: held 5 s; release it for the factory reset");
            button.wait_for_high().await;
        }
        let held_ms = pressed.elapsed().as_millis();
        log::info!("button: released after {held_ms} ms");
        state::EVENTS.send(Event::ButtonReleased { held_ms }).await;
        Timer::after(DEBOUNCE).await;
    }
}
