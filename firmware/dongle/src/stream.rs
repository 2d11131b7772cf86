//! The telegram stream on TCP port 2001: every decrypted telegram, as the meter's plaintext,
//! to each connected client (what `smarty`, Home Assistant's DSMR integration or any DSMR
//! tool reads from `tcp://DONGLE:2001`, like ser2net).

use embassy_net::{Stack, tcp::TcpSocket};
use embassy_time::Duration;
use embedded_io_async::Write as _;

use crate::state;

/// The port DSMR tools expect of a network P1 dongle.
pub const PORT: u16 = 2001;

/// Serves one client at a time; two of these tasks run.
#[embassy_executor::task(pool_size = 2)]
pub async fn server(stack: Stack<'static>) {
    let mut rx = [0_u8; 64];
    let mut tx = [0_u8; 1536];
    loop {
        let mut socket = TcpSocket::new(stack, &mut rx, &mut tx);
        socket.set_timeout(Some(Duration::from_secs(60)));
        if socket.accept(PORT).await.is_err() {
            continue;
        }
        let Some(mut telegrams) = state::SEQUENCE.receiver() else {
            socket.abort();
            continue;
        };
        // The latest telegram at once, then each new one.
        loop {
            telegrams.changed().await;
            let Some(telegram) = state::with_latest(|s| s.telegram.clone()) else {
                continue;
            };
            if socket.write_all(&telegram).await.is_err() || socket.flush().await.is_err() {
                break;
            }
        }
        socket.abort();
        let _ = socket.flush().await;
    }
}
