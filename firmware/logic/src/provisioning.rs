//! The connection state machine, as a pure function: [`next`]`(state, event) → (state,
//! actions)`. The firmware feeds it what happened (booted, Wi-Fi joined or failed, broker
//! connected or lost, the timer fired, the button was released) and carries out the
//! [`Action`]s (start the set-up access point, join Wi-Fi, connect the broker, arm the one
//! timer, erase the settings).
//!
//! ```text
//!  Booted(no settings) ─► SetupAp ──SettingsSaved──► Joining ──WifiJoined──► ConnectingBroker
//!  Booted(settings) ──────────────────────────────► Joining       ▲  │            │ ▲
//!                 WifiFailed (n < max) ─► WaitingWifi ─TimerFired─┘  │  BrokerFailed │ │ TimerFired
//!                 WifiFailed (n = max) ─► SetupAp (settings kept) ───┘   ▼           │ │
//!                        └── TimerFired or SettingsSaved: back to Joining   WaitingBroker
//!  Online ─BrokerLost─► WaitingBroker;  any connected state ─WifiLost─► WaitingWifi
//!  Button held ≥ 5 s: factory reset (erase, SetupAp);  shorter: SetupAp (settings kept)
//! ```
//!
//! Retries back off: 1 s, 2 s, 4 s … up to 60 s ([`Policy`]).

use alloc::vec::Vec;

/// Timings and limits.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub struct Policy {
    /// Failed Wi-Fi joins in a row before the set-up access point opens again (default 5).
    pub max_wifi_failures: u32,
    /// How long the set-up access point stays open, when settings exist, before joining
    /// again (ms; default 5 minutes).
    pub ap_timeout_ms: u64,
    /// First retry delay (ms; default 1 s), doubled per failure.
    pub backoff_initial_ms: u64,
    /// Longest retry delay (ms; default 60 s).
    pub backoff_max_ms: u64,
    /// A button press at least this long is a factory reset (ms; default 5 s).
    pub long_press_ms: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_wifi_failures: 5,
            ap_timeout_ms: 5 * 60_000,
            backoff_initial_ms: 1_000,
            backoff_max_ms: 60_000,
            long_press_ms: 5_000,
        }
    }
}

impl Policy {
    /// The delay before retry number `failures` (1 for the first): initial × 2^(failures−1),
    /// at most the maximum.
    ///
    /// # Example
    /// ```
    /// use smarty_dongle::provisioning::Policy;
    /// let p = Policy::default();
    /// assert_eq!([1, 2, 3, 7, 30].map(|n| p.backoff_ms(n)), [1_000, 2_000, 4_000, 60_000, 60_000]);
    /// ```
    pub fn backoff_ms(&self, failures: u32) -> u64 {
        let shift = failures.saturating_sub(1).min(32);
        self.backoff_initial_ms
            .saturating_mul(1u64 << shift)
            .min(self.backoff_max_ms)
    }
}

/// Where the dongle is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum State {
    /// Powered on, settings not read yet.
    Start,
    /// The set-up access point and captive portal are up.
    SetupAp {
        /// Settings exist (kept from before): the timer brings it back to joining.
        has_settings: bool,
    },
    /// Joining the Wi-Fi network.
    Joining {
        /// Failed joins in a row so far.
        failures: u32,
    },
    /// Waiting for the timer before joining again.
    WaitingWifi {
        /// Failed joins in a row so far.
        failures: u32,
    },
    /// On Wi-Fi, connecting to the broker.
    ConnectingBroker {
        /// Failed connections in a row so far.
        failures: u32,
    },
    /// On Wi-Fi, waiting for the timer before connecting to the broker again.
    WaitingBroker {
        /// Failed connections in a row so far.
        failures: u32,
    },
    /// Connected to the broker: publishing.
    Online,
}

impl State {
    /// A short snake_case name for the status API (`online`, `setup_ap`).
    pub fn as_str(&self) -> &'static str {
        match self {
            State::Start => "start",
            State::SetupAp { .. } => "setup_ap",
            State::Joining { .. } => "joining_wifi",
            State::WaitingWifi { .. } => "waiting_wifi",
            State::ConnectingBroker { .. } => "connecting_broker",
            State::WaitingBroker { .. } => "waiting_broker",
            State::Online => "online",
        }
    }

    /// On Wi-Fi (connecting to, waiting for, or connected to the broker).
    fn on_wifi(&self) -> bool {
        matches!(
            self,
            State::ConnectingBroker { .. } | State::WaitingBroker { .. } | State::Online
        )
    }
}

/// What happened.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Event {
    /// The settings were read from flash at power-on.
    Booted {
        /// Whether there are valid settings.
        has_settings: bool,
    },
    /// The user saved settings (set-up form).
    SettingsSaved,
    /// Joined the Wi-Fi network (with an address).
    WifiJoined,
    /// Joining failed (wrong password, network not found, no address).
    WifiFailed,
    /// The Wi-Fi connection was lost.
    WifiLost,
    /// Connected to the broker (CONNACK accepted).
    BrokerConnected,
    /// Connecting to the broker failed.
    BrokerFailed,
    /// The broker connection was lost.
    BrokerLost,
    /// The timer armed by [`Action::StartTimer`] fired.
    TimerFired,
    /// The button was released after being held `held_ms` milliseconds.
    ButtonReleased {
        /// How long it was held (ms).
        held_ms: u64,
    },
}

/// What to do, in the order given.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Action {
    /// Start the set-up access point and captive portal.
    StartAccessPoint,
    /// Stop them.
    StopAccessPoint,
    /// Join the Wi-Fi network of the settings.
    JoinWifi,
    /// Leave the Wi-Fi network.
    LeaveWifi,
    /// Connect to the broker (then publish `online` and discovery).
    ConnectBroker,
    /// Disconnect from the broker (publishing `offline` first when connected).
    DisconnectBroker,
    /// Arm the timer to fire [`Event::TimerFired`] after `ms` (replacing an armed one).
    StartTimer {
        /// Delay in milliseconds.
        ms: u64,
    },
    /// Disarm the timer.
    CancelTimer,
    /// Erase the settings from flash.
    EraseSettings,
}

/// Actions, at most a handful per transition.
pub type Actions = Vec<Action>;

/// [`next_with`] under the default [`Policy`].
pub fn next(state: State, event: Event) -> (State, Actions) {
    next_with(&Policy::default(), state, event)
}

/// The state after `event` in `state`, and what to do. An event that means nothing in a state
/// (a stray timer, a broker event while off Wi-Fi) leaves it as it is, with no action.
///
/// # Example
/// ```
/// use smarty_dongle::provisioning::{Action, Event, State, next};
/// let (state, actions) = next(State::Start, Event::Booted { has_settings: false });
/// assert_eq!(state, State::SetupAp { has_settings: false });
/// assert_eq!(actions, [Action::StartAccessPoint]);
/// let (state, actions) = next(state, Event::SettingsSaved);
/// assert_eq!(state, State::Joining { failures: 0 });
/// assert_eq!(actions, [Action::CancelTimer, Action::StopAccessPoint, Action::JoinWifi]);
/// ```
pub fn next_with(policy: &Policy, state: State, event: Event) -> (State, Actions) {
    use Action as A;
    use State as S;
    let join = |actions: &[Action]| {
        let mut all = Vec::from(actions);
        all.push(A::JoinWifi);
        (S::Joining { failures: 0 }, all)
    };
    let ap_kept = |before: &[Action]| {
        let mut all = Vec::from(before);
        all.extend([
            A::StartAccessPoint,
            A::StartTimer {
                ms: policy.ap_timeout_ms,
            },
        ]);
        (S::SetupAp { has_settings: true }, all)
    };
    // Tear down whatever runs in `state`.
    let teardown = |state: State| -> Vec<Action> {
        match state {
            S::Start => Vec::new(),
            S::SetupAp { .. } => alloc::vec![A::CancelTimer, A::StopAccessPoint],
            S::Joining { .. } | S::WaitingWifi { .. } => alloc::vec![A::CancelTimer, A::LeaveWifi],
            S::ConnectingBroker { .. } | S::WaitingBroker { .. } | S::Online => {
                alloc::vec![A::CancelTimer, A::DisconnectBroker, A::LeaveWifi]
            }
        }
    };

    match (state, event) {
        // The button works everywhere.
        (_, Event::ButtonReleased { held_ms }) if held_ms >= policy.long_press_ms => {
            let mut actions = teardown(state);
            actions.retain(|a| *a != A::StopAccessPoint);
            actions.push(A::EraseSettings);
            if !matches!(state, S::SetupAp { .. }) {
                actions.push(A::StartAccessPoint);
            }
            (
                S::SetupAp {
                    has_settings: false,
                },
                actions,
            )
        }
        (S::Start, Event::ButtonReleased { .. }) => (state, Vec::new()),
        // A short press in the access point with settings: back to joining.
        (S::SetupAp { has_settings: true }, Event::ButtonReleased { .. }) => {
            join(&[A::CancelTimer, A::StopAccessPoint])
        }
        (
            S::SetupAp {
                has_settings: false,
            },
            Event::ButtonReleased { .. },
        ) => (state, Vec::new()),
        (_, Event::ButtonReleased { .. }) => ap_kept(&teardown(state)),

        // Saved settings: (re)join with them, from anywhere.
        (S::SetupAp { .. }, Event::SettingsSaved) => join(&[A::CancelTimer, A::StopAccessPoint]),
        (_, Event::SettingsSaved) => join(&teardown(state)),

        (
            S::Start,
            Event::Booted {
                has_settings: false,
            },
        ) => (
            S::SetupAp {
                has_settings: false,
            },
            alloc::vec![A::StartAccessPoint],
        ),
        (S::Start, Event::Booted { has_settings: true }) => join(&[]),

        (S::SetupAp { has_settings: true }, Event::TimerFired) => join(&[A::StopAccessPoint]),

        (S::Joining { .. }, Event::WifiJoined) => (
            S::ConnectingBroker { failures: 0 },
            alloc::vec![A::ConnectBroker],
        ),
        (S::Joining { failures }, Event::WifiFailed) => {
            let failures = failures + 1;
            if failures >= policy.max_wifi_failures {
                ap_kept(&[A::LeaveWifi])
            } else {
                (
                    S::WaitingWifi { failures },
                    alloc::vec![A::StartTimer {
                        ms: policy.backoff_ms(failures)
                    }],
                )
            }
        }
        (S::WaitingWifi { failures }, Event::TimerFired) => {
            (S::Joining { failures }, alloc::vec![A::JoinWifi])
        }

        (s, Event::WifiLost) if s.on_wifi() => (
            S::WaitingWifi { failures: 0 },
            alloc::vec![
                A::CancelTimer,
                A::DisconnectBroker,
                A::StartTimer {
                    ms: policy.backoff_ms(1)
                }
            ],
        ),

        (S::ConnectingBroker { .. }, Event::BrokerConnected) => (S::Online, Vec::new()),
        (S::ConnectingBroker { failures }, Event::BrokerFailed) => {
            let failures = failures.saturating_add(1);
            (
                S::WaitingBroker { failures },
                alloc::vec![A::StartTimer {
                    ms: policy.backoff_ms(failures)
                }],
            )
        }
        (S::WaitingBroker { failures }, Event::TimerFired) => (
            S::ConnectingBroker { failures },
            alloc::vec![A::ConnectBroker],
        ),
        (S::Online, Event::BrokerLost) => (
            S::WaitingBroker { failures: 1 },
            alloc::vec![A::StartTimer {
                ms: policy.backoff_ms(1)
            }],
        ),

        // Anything else means nothing here.
        _ => (state, Vec::new()),
    }
}
