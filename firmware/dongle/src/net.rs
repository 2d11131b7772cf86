//! Wi-Fi: the station on the home network (DHCP), and the set-up access point (WPA2 with the
//! per-device password) with its own DHCP server and a DNS server that answers every name
//! with the dongle (captive portal). Each has its embassy-net stack, made at boot; the
//! [`wifi`] task owns the radio and switches it between the two as the control loop
//! ([`smarty_dongle::provisioning`]) commands, reporting what happened back to it.
//!
//! Power: the P1 port gives 250 mA at most, shared with the meter's other loads, so the
//! transmit power is capped ([`MAX_TX_POWER`]) and the station sleeps between beacons
//! (modem sleep); `main` starts the radio only after the supply has settled.

use alloc::format;
use core::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use embassy_futures::select::{Either, Either3, select, select3};
use embassy_net::{Runner, Stack, StackResources};
use embassy_time::{Duration, Timer, with_timeout};
use esp_radio::wifi::{
    AuthenticationMethodConfig, Config, Interface, PowerSaveMode, WifiController, WifiError,
    ap::AccessPointConfig, sta::StationConfig,
};
use smarty_dongle::provisioning::Event;
use static_cell::StaticCell;

use crate::state::{self, WifiCommand};

/// Transmit power cap in 0.25 dBm: 40 = 10 dBm (the default is 20 dBm peaks of ~300 mA).
pub const MAX_TX_POWER: i8 = 40;
/// The set-up access point's address.
pub const AP_ADDRESS: Ipv4Addr = Ipv4Addr::new(192, 168, 4, 1);
/// How long joining may take: association, then an address by DHCP.
const JOIN_TIMEOUT: Duration = Duration::from_secs(20);
/// How often the signal strength is read while joined.
const RSSI_EVERY: Duration = Duration::from_secs(30);

/// Station sockets: MQTT, DNS, HTTP, two streams, OTA, DHCP, spare.
const STATION_SOCKETS: usize = 8;
/// Access point sockets: HTTP, DHCP server, DNS server, spare.
const AP_SOCKETS: usize = 4;

/// Runs a network stack (one for the station, one for the access point).
#[embassy_executor::task(pool_size = 2)]
pub async fn runner(mut runner: Runner<'static, Interface>) {
    runner.run().await
}

/// The station's stack (DHCP, host name `smarty-XXXXXX`) and the access point's (static
/// [`AP_ADDRESS`]/24); spawn [`runner`] with each runner.
pub fn stacks(
    seed: u64,
) -> (
    (Stack<'static>, Runner<'static, Interface>),
    (Stack<'static>, Runner<'static, Interface>),
) {
    static STATION: StaticCell<StackResources<STATION_SOCKETS>> = StaticCell::new();
    static AP: StaticCell<StackResources<AP_SOCKETS>> = StaticCell::new();
    let mut dhcp = embassy_net::DhcpConfig::default();
    dhcp.hostname = format!("smarty-{}", mac_suffix()).as_str().try_into().ok();
    let station = embassy_net::new(
        Interface::station(),
        embassy_net::Config::dhcpv4(dhcp),
        STATION.init(StackResources::new()),
        seed,
    );
    let config = embassy_net::Config::ipv4_static(embassy_net::StaticConfigV4 {
        address: embassy_net::Ipv4Cidr::new(AP_ADDRESS, 24),
        gateway: Some(AP_ADDRESS),
        dns_servers: Default::default(),
    });
    let ap = embassy_net::new(
        Interface::access_point(),
        config,
        AP.init(StackResources::new()),
        seed.rotate_left(32),
    );
    (station, ap)
}

/// The dongle's short name (`12ab0f`).
pub fn mac_suffix() -> &'static str {
    state::MAC_SUFFIX.try_get().map_or("000000", |s| s.as_str())
}

/// Why joining failed.
#[derive(Debug)]
enum JoinError {
    /// No settings (cannot happen: the control loop joins only with settings).
    NoSettings,
    /// The driver refused the configuration (name or password too long).
    Config(WifiError),
    /// Association failed (wrong password, network not found).
    Connect(esp_radio::wifi::ConnectionError),
    /// No association or no DHCP address within [`JOIN_TIMEOUT`].
    Timeout,
}

impl core::fmt::Display for JoinError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            JoinError::NoSettings => f.write_str("no settings"),
            JoinError::Config(e) => write!(f, "the driver refused the configuration: {e:?}"),
            JoinError::Connect(e) => write!(f, "association failed: {e:?}"),
            JoinError::Timeout => f.write_str("no association or address in time"),
        }
    }
}

/// Joins the network of the settings and waits for an address.
async fn join(
    controller: &mut WifiController<'static>,
    station: Stack<'static>,
) -> Result<(), JoinError> {
    let settings = state::SETTINGS
        .try_get()
        .and_then(Option::as_ref)
        .ok_or(JoinError::NoSettings)?;
    let ssid = settings
        .wifi_ssid
        .as_str()
        .try_into()
        .map_err(JoinError::Config)?;
    let password = settings.wifi_password.expose();
    let authentication = if password.is_empty() {
        AuthenticationMethodConfig::Open
    } else {
        AuthenticationMethodConfig::Wpa2Personal(password.try_into().map_err(JoinError::Config)?)
    };
    controller
        .set_config(&Config::Station(
            StationConfig::default()
                .with_ssid(ssid)
                .with_authentication(authentication),
        ))
        .map_err(JoinError::Config)?;
    controller
        .set_max_tx_power(MAX_TX_POWER)
        .map_err(JoinError::Config)?;
    controller
        .set_power_saving(PowerSaveMode::Minimum)
        .map_err(JoinError::Config)?;
    with_timeout(JOIN_TIMEOUT, controller.connect_async())
        .await
        .map_err(|_| JoinError::Timeout)?
        .map_err(JoinError::Connect)?;
    with_timeout(JOIN_TIMEOUT, station.wait_config_up())
        .await
        .map_err(|_| JoinError::Timeout)?;
    Ok(())
}

/// Opens the set-up access point with its per-device password, and prints both on the
/// serial console.
fn start_access_point(controller: &mut WifiController<'static>) -> Result<(), WifiError> {
    let Some(ap) = state::ACCESS_POINT.try_get() else {
        return Err(WifiError::InvalidArguments);
    };
    controller.set_config(&Config::AccessPoint(
        AccessPointConfig::default()
            .with_ssid(ap.ssid.as_str().try_into()?)
            .with_authentication(AuthenticationMethodConfig::Wpa2Personal(
                ap.password.as_str().try_into()?,
            )),
    ))?;
    controller.set_max_tx_power(MAX_TX_POWER)?;
    log::info!(
        "set-up access point {} (WPA2 password {}) at http://{AP_ADDRESS}/",
        ap.ssid,
        ap.password
    );
    Ok(())
}

/// Owns the radio: carries out the control loop's [`WifiCommand`]s and reports
/// [`Event::WifiJoined`], [`Event::WifiFailed`] and [`Event::WifiLost`].
#[embassy_executor::task]
pub async fn wifi(mut controller: WifiController<'static>, station: Stack<'static>) {
    let mut next = None;
    loop {
        let command = match next.take() {
            Some(command) => command,
            None => state::WIFI.receive().await,
        };
        match command {
            WifiCommand::StartAccessPoint => {
                if let Err(error) = start_access_point(&mut controller) {
                    log::error!("Wi-Fi: cannot open the set-up access point: {error:?}");
                }
            }
            // The radio switches to the station when it joins next.
            WifiCommand::StopAccessPoint => {}
            WifiCommand::Leave => {
                let _ = controller.disconnect_async().await;
                state::update(|c| (c.address, c.rssi_dbm) = (None, None));
            }
            WifiCommand::Join => {
                let joined = select(join(&mut controller, station), state::WIFI.receive()).await;
                match joined {
                    Either::First(Ok(())) => {
                        let address = station.config_v4().map(|c| c.address);
                        log::info!("Wi-Fi: joined, address {address:?}");
                        state::update(|c| c.address = address);
                        state::EVENTS.send(Event::WifiJoined).await;
                        next = Some(stay_joined(&controller).await);
                    }
                    Either::First(Err(error)) => {
                        log::warn!("Wi-Fi: cannot join: {error}");
                        let _ = controller.disconnect_async().await;
                        state::EVENTS.send(Event::WifiFailed).await;
                    }
                    // Another command while joining (the button): that one wins.
                    Either::Second(command) => {
                        let _ = controller.disconnect_async().await;
                        next = Some(command);
                    }
                }
            }
        }
    }
}

/// While joined: reads the signal strength now and then; returns the next command, after
/// reporting [`Event::WifiLost`] if the connection drops first.
async fn stay_joined(controller: &WifiController<'static>) -> WifiCommand {
    loop {
        let rssi = controller.rssi().ok().and_then(|r| i8::try_from(r).ok());
        state::update(|c| c.rssi_dbm = rssi);
        match select3(
            controller.wait_for_disconnect_async(),
            state::WIFI.receive(),
            Timer::after(RSSI_EVERY),
        )
        .await
        {
            Either3::First(_) => {
                log::warn!("Wi-Fi: connection lost");
                state::update(|c| (c.address, c.rssi_dbm) = (None, None));
                state::EVENTS.send(Event::WifiLost).await;
                return state::WIFI.receive().await;
            }
            Either3::Second(command) => return command,
            Either3::Third(()) => {}
        }
    }
}

/// UDP sockets for the DHCP and DNS servers.
type UdpBuffers = edge_nal_embassy::UdpBuffers<2, 640, 640, 2>;

/// The set-up access point's DHCP server: addresses .50–.200, the dongle as router and DNS
/// (so that phones find the captive portal).
#[embassy_executor::task]
pub async fn dhcp_server(stack: Stack<'static>) {
    use edge_nal::UdpBind as _;
    static BUFFERS: StaticCell<UdpBuffers> = StaticCell::new();
    let buffers = &*BUFFERS.init(UdpBuffers::new());
    let udp = edge_nal_embassy::Udp::new(stack, buffers);
    let mut buffer = [0_u8; 1024];
    let mut gateways = [AP_ADDRESS];
    let dns = [AP_ADDRESS];
    let captive_url = format!("http://{AP_ADDRESS}/");
    loop {
        let Ok(mut socket) = udp
            .bind(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 67)))
            .await
        else {
            Timer::after(Duration::from_secs(1)).await;
            continue;
        };
        let mut options = edge_dhcp::server::ServerOptions::new(AP_ADDRESS, Some(&mut gateways));
        options.dns = &dns;
        options.captive_url = Some(&captive_url);
        let mut server = edge_dhcp::server::Server::<_, 16>::new(
            || embassy_time::Instant::now().as_secs(),
            AP_ADDRESS,
        );
        if let Err(error) =
            edge_dhcp::io::server::run(&mut server, &options, &mut socket, &mut buffer).await
        {
            log::warn!("DHCP server: {error:?}");
        }
    }
}

/// The set-up access point's DNS server: every name is the dongle.
#[embassy_executor::task]
pub async fn dns_server(stack: Stack<'static>) {
    static BUFFERS: StaticCell<UdpBuffers> = StaticCell::new();
    let buffers = &*BUFFERS.init(UdpBuffers::new());
    let udp = edge_nal_embassy::Udp::new(stack, buffers);
    let mut tx = [0_u8; 512];
    let mut rx = [0_u8; 512];
    loop {
        if let Err(error) = edge_captive::io::run(
            &udp,
            SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 53)),
            &mut tx,
            &mut rx,
            AP_ADDRESS,
            core::time::Duration::from_secs(60),
        )
        .await
        {
            log::warn!("DNS server: {error:?}");
            Timer::after(Duration::from_secs(1)).await;
        }
    }
}
