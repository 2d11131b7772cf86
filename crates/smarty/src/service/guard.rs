//! The live reference-power guard of each meter in the service (`[guard]`, docs/guard.md):
//! its settings, and the feed that turns each accepted telegram into a
//! [`MeterEvent::Guard`](smarty_model::event::MeterEvent::Guard) for the outputs.
//!
//! The guard reads the telegram as the store does ([`smarty_store::Reading::from_event`]: the
//! import register in Wh, from `1-0:1.8.0` or the sum of the tariff registers, at the
//! telegram's own time), so that the quarter hours it closes are the store's 15-minute
//! intervals. After a restart it resumes from the store: the last stored reading, the
//! quarter in progress and the month's closed quarters.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use smarty_model::event::{GuardEvent, TelegramEvent};
use smarty_model::guard::{Alert, Guard, GuardConfig, Reading};
use smarty_model::period::{INTERVAL_S, interval_start};
use smarty_model::secret::Secret;
use smarty_model::time::{meter_zone, month_start_after};
use smarty_store::Store;

/// `[guard]`: the live guard of the reference power, and where its alerts go.
///
/// ```toml
/// [guard]
/// # reference_power_kw = 7      # default: [tariff] reference_power_kw
/// headroom_below_kw = 1.0       # alert when less than 1 kW may still be drawn
/// notify_url = "https://ntfy.sh/my-smarty-alerts"
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardSection {
    /// Compute the guard (default true); off: no guard figures, no alerts.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The reference power, kW; default: `[tariff] reference_power_kw` (itself 7 kW by
    /// default).
    #[serde(default)]
    pub reference_power_kw: Option<f64>,
    /// "Will exceed" switches off only when the projection falls this far below the reference
    /// power, kW (default 0.2): a power hovering at the line does not flap.
    #[serde(default = "default_hysteresis_kw")]
    pub hysteresis_kw: f64,
    /// Alert when the headroom falls below this, kW; no such alert when unset.
    #[serde(default)]
    pub headroom_below_kw: Option<f64>,
    /// Alert when the projected average goes over the reference power (default true).
    #[serde(default = "yes")]
    pub alert_will_exceed: bool,
    /// Alert when the quarter in progress goes over the month's highest so far (the
    /// capacity tariff's peak; default false).
    #[serde(default)]
    pub alert_new_monthly_peak: bool,
    /// POST each alert to this URL, ntfy-compatible: the message as the body, `Title`,
    /// `Tags` and `Priority` headers (`https://ntfy.sh/TOPIC`, a self-hosted ntfy, or any
    /// web hook).
    #[serde(default)]
    pub notify_url: Option<String>,
    /// A bearer token for `notify_url` (an ntfy access token); prefer `notify_token_file` or
    /// `SMARTY_GUARD_NOTIFY_TOKEN`.
    #[serde(default)]
    pub notify_token: Option<Secret>,
    /// A file holding the token.
    #[serde(default)]
    pub notify_token_file: Option<PathBuf>,
    /// Run this program for each alert: the program and its arguments, no shell
    /// (`["/usr/local/bin/pause-charger", "--minutes", "15"]`); the alert is in its
    /// environment (`SMARTY_ALERT_KIND`, …) and as JSON on its standard input.
    #[serde(default)]
    pub command: Option<Vec<String>>,
}

impl Default for GuardSection {
    fn default() -> Self {
        GuardSection {
            enabled: true,
            reference_power_kw: None,
            hysteresis_kw: default_hysteresis_kw(),
            headroom_below_kw: None,
            alert_will_exceed: true,
            alert_new_monthly_peak: false,
            notify_url: None,
            notify_token: None,
            notify_token_file: None,
            command: None,
        }
    }
}

fn yes() -> bool {
    true
}

fn default_hysteresis_kw() -> f64 {
    0.2
}

impl GuardSection {
    /// Every mistake, as `(field, message)`.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if let Some(kw) = self.reference_power_kw
            && !positive(kw)
        {
            out.push((
                "reference_power_kw",
                format!("[guard]: reference_power_kw = {kw} must be more than 0 kW"),
            ));
        }
        if !(self.hysteresis_kw.is_finite() && self.hysteresis_kw >= 0.0) {
            out.push((
                "hysteresis_kw",
                "[guard]: hysteresis_kw must be 0 kW or more".to_owned(),
            ));
        }
        if let Some(kw) = self.headroom_below_kw
            && !positive(kw)
        {
            out.push((
                "headroom_below_kw",
                format!("[guard]: headroom_below_kw = {kw} must be more than 0 kW"),
            ));
        }
        if let Some(url) = &self.notify_url {
            match url::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => {}
                Ok(_) => out.push((
                    "notify_url",
                    "[guard]: notify_url must be an http:// or https:// URL".to_owned(),
                )),
                Err(e) => out.push(("notify_url", format!("[guard]: notify_url: {e}"))),
            }
        }
        if self.notify_token.is_some() && self.notify_token_file.is_some() {
            out.push((
                "notify_token_file",
                "[guard]: give notify_token or notify_token_file, not both".to_owned(),
            ));
        }
        if (self.notify_token.is_some() || self.notify_token_file.is_some())
            && self.notify_url.is_none()
        {
            out.push((
                "notify_token",
                "[guard]: a notify token needs notify_url".to_owned(),
            ));
        }
        if let Some(command) = &self.command
            && command.first().is_none_or(|p| p.trim().is_empty())
        {
            out.push((
                "command",
                "[guard]: command must name a program: [\"/path/to/program\", \"arg\", …]"
                    .to_owned(),
            ));
        }
        out
    }

    /// The guard's settings with the tariff's reference power `tariff_reference_kw` unless
    /// the section gives its own.
    pub fn guard_config(&self, tariff_reference_kw: f64) -> GuardConfig {
        GuardConfig::new(self.reference_power_kw.unwrap_or(tariff_reference_kw))
            .with_headroom_alert_kw(self.headroom_below_kw)
            .with_hysteresis_kw(self.hysteresis_kw)
    }

    /// Whether alerts of this kind are delivered.
    pub fn wants(&self, alert: &Alert) -> bool {
        match alert {
            Alert::HeadroomLow { .. } => self.headroom_below_kw.is_some(),
            Alert::WillExceed { .. } => self.alert_will_exceed,
            Alert::NewMonthlyPeak { .. } => self.alert_new_monthly_peak,
            _ => false,
        }
    }

    /// Whether alerts go anywhere besides MQTT (a URL or a command).
    pub fn delivers(&self) -> bool {
        self.enabled && (self.notify_url.is_some() || self.command.is_some())
    }
}

/// The guard of one meter in the service.
#[derive(Debug)]
pub struct MeterGuard {
    guard: Guard,
    settings: Arc<GuardSection>,
}

impl MeterGuard {
    /// A guard of `config`, delivering the alerts `settings` asks for.
    pub fn new(config: GuardConfig, settings: Arc<GuardSection>) -> MeterGuard {
        MeterGuard {
            guard: Guard::new(config, meter_zone()),
            settings,
        }
    }

    /// Resumes from what `store` holds of `meter` (a restart): the last reading, the
    /// quarter in progress and the closed quarters of its month. Nothing stored: nothing to
    /// resume.
    ///
    /// # Errors
    /// A store that cannot be read (the guard then starts afresh).
    pub fn resume(&mut self, store: &Store, meter: &str) -> anyhow::Result<()> {
        let store = store.reader()?;
        if store.meter(meter)?.is_none() {
            return Ok(());
        }
        let Some((ts, values)) = store.last_reading(meter)? else {
            return Ok(());
        };
        let Some(register_kwh) = values
            .iter()
            .find(|(name, _)| *name == "energy_import_kwh")
            .map(|(_, v)| *v)
        else {
            return Ok(());
        };
        let quarter = interval_start(ts);
        let month = month_start_after(quarter, 0, &meter_zone());
        for interval in store.intervals(meter, month, quarter)? {
            self.guard
                .note_closed(interval.start, interval.energy_import_wh);
        }
        let so_far = store
            .intervals(meter, quarter, quarter + INTERVAL_S)?
            .first()
            .map_or(0, |i| i.energy_import_wh);
        self.guard
            .resume(ts, (register_kwh * 1000.0).round() as i64, so_far);
        Ok(())
    }

    /// The guard after `event`; `None` when the telegram has no import register. Its alerts
    /// are those the settings ask for.
    pub fn telegram(&mut self, event: &TelegramEvent) -> Option<GuardEvent> {
        let (Some(stored), _) = smarty_store::Reading::from_event(event) else {
            return None;
        };
        let reading = Reading::new(
            stored.ts,
            stored.energy_import_wh?,
            stored.power_import_w.map(|w| w as f64 / 1000.0),
        )
        .with_demand_of(&event.values);
        let mut update = self.guard.update(&reading);
        update.alerts.retain(|a| self.settings.wants(a));
        Some(GuardEvent::new(&event.meter, update))
    }
}

#[cfg(test)]
mod tests;
