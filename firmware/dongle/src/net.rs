//! Wi-Fi: the station on the home network (DHCP), or the set-up access point with its own
//! DHCP server and a DNS server that answers every name with the dongle (captive portal).
//!
//! Power: the P1 port gives 250 mA at most, shared with the meter's other loads, so the
//! transmit power is capped ([`MAX_TX_POWER`]) and the station sleeps between beacons
//! (modem sleep); `main` starts the radio only after the supply has settled.

use alloc::{format, string::String};
use core::{
    cell::Cell,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
};

use embassy_net::{Runner, Stack, StackResources};
use embassy_sync::blocking_mutex::{Mutex, raw::CriticalSectionRawMutex};
use embassy_time::{Duration, Timer};
use esp_radio::wifi::{
    AuthenticationMethodConfig, Config, Interface, PowerSaveMode, WifiController,
    ap::AccessPointConfig, sta::StationConfig,
};
use static_cell::StaticCell;

use crate::settings::Settings;

/// Transmit power cap in 0.25 dBm: 40 = 10 dBm (the default is 20 dBm peaks of ~300 mA).
pub const MAX_TX_POWER: i8 = 40;
/// The set-up access point's address.
pub const AP_ADDRESS: Ipv4Addr = Ipv4Addr::new(192, 168, 4, 1);

/// The Wi-Fi MAC address, for names (client id, access point name).
static MAC: Mutex<CriticalSectionRawMutex, Cell<[u8; 6]>> = Mutex::new(Cell::new([0; 6]));

/// The last three bytes of the MAC address in hex: the dongle's short name.
pub fn mac_suffix() -> String {
    let mac = MAC.lock(Cell::get);
    format!("{:02x}{:02x}{:02x}", mac[3], mac[4], mac[5])
}

/// Sockets: MQTT, API, two streams, DHCP, DNS, spare.
const SOCKETS: usize = 8;

/// Builds the network stack on `interface` with `config`; spawn [`runner`] with the runner.
fn stack(
    interface: Interface,
    config: embassy_net::Config,
    seed: u64,
) -> (Stack<'static>, Runner<'static, Interface>) {
    MAC.lock(|mac| mac.set(interface.mac_address()));
    static RESOURCES: StaticCell<StackResources<SOCKETS>> = StaticCell::new();
    embassy_net::new(
        interface,
        config,
        RESOURCES.init(StackResources::new()),
        seed,
    )
}

/// Runs the network stack.
#[embassy_executor::task]
pub async fn runner(mut runner: Runner<'static, Interface>) {
    runner.run().await
}

/// Joins the network of `settings` as a station; returns the stack (DHCP) and its runner.
///
/// # Errors
///
/// When the settings' network name or password is too long, or the driver refuses them.
pub fn station(
    controller: &mut WifiController<'static>,
    settings: &Settings,
    seed: u64,
) -> Result<(Stack<'static>, Runner<'static, Interface>), esp_radio::wifi::WifiError> {
    let ssid = settings.wifi_ssid.as_str().try_into()?;
    let authentication = if settings.wifi_password.is_empty() {
        AuthenticationMethodConfig::Open
    } else {
        AuthenticationMethodConfig::Wpa2Personal(settings.wifi_password.as_str().try_into()?)
    };
    controller.set_config(&Config::Station(
        StationConfig::default()
            .with_ssid(ssid)
            .with_authentication(authentication),
    ))?;
    controller.set_max_tx_power(MAX_TX_POWER)?;
    controller.set_power_saving(PowerSaveMode::Minimum)?;
    let mut dhcp = embassy_net::DhcpConfig::default();
    dhcp.hostname = format!("smarty-{}", mac_suffix_of(&Interface::station()))
        .as_str()
        .try_into()
        .ok();
    Ok(stack(
        Interface::station(),
        embassy_net::Config::dhcpv4(dhcp),
        seed,
    ))
}

fn mac_suffix_of(interface: &Interface) -> String {
    let mac = interface.mac_address();
    format!("{:02x}{:02x}{:02x}", mac[3], mac[4], mac[5])
}

/// Keeps the station connected, with back-off between attempts.
#[embassy_executor::task]
pub async fn keep_connected(mut controller: WifiController<'static>) {
    let mut backoff_s = 1;
    loop {
        match controller.connect_async().await {
            Ok(_) => {
                log::info!("Wi-Fi: connected");
                backoff_s = 1;
                let _ = controller.wait_for_disconnect_async().await;
                log::warn!("Wi-Fi: disconnected");
            }
            Err(error) => log::warn!("Wi-Fi: cannot connect: {error:?}"),
        }
        Timer::after(Duration::from_secs(backoff_s)).await;
        backoff_s = (backoff_s * 2).min(60);
    }
}

/// Opens the set-up access point `smarty-XXXXXX` (open: it only ever carries the form, and
/// it closes once settings are saved); returns the stack (static address) and its runner.
///
/// # Errors
///
/// When the driver refuses the configuration.
pub fn access_point(
    controller: &mut WifiController<'static>,
    seed: u64,
) -> Result<(Stack<'static>, Runner<'static, Interface>), esp_radio::wifi::WifiError> {
    let name = format!("smarty-{}", mac_suffix_of(&Interface::access_point()));
    controller.set_config(&Config::AccessPoint(
        AccessPointConfig::default().with_ssid(name.as_str().try_into()?),
    ))?;
    controller.set_max_tx_power(MAX_TX_POWER)?;
    log::info!("Wi-Fi: set-up access point {name} at http://{AP_ADDRESS}/");
    let config = embassy_net::Config::ipv4_static(embassy_net::StaticConfigV4 {
        address: embassy_net::Ipv4Cidr::new(AP_ADDRESS, 24),
        gateway: Some(AP_ADDRESS),
        dns_servers: Default::default(),
    });
    Ok(stack(Interface::access_point(), config, seed))
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
