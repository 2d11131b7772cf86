//! `smarty-dongle-ota` (`cargo ota` in `firmware/`): updates a smarty P1 dongle over the air.
//!
//! ```text
//! cargo ota keygen ~/.config/smarty-dongle/ota.key     # once: the builder's key pair
//! SMARTY_DONGLE_OTA_PUBLIC_KEY=<printed hex> cargo build-c3
//! cargo ota upload --key ~/.config/smarty-dongle/ota.key smarty-XXXXXX IMAGE.bin
//! ```
//!
//! The dongle takes an upload on TCP port 3232 (`smarty_dongle::ota`): the image's ed25519
//! signature, its length and the image; it activates the new slot only when the signature
//! verifies with the public key it was built with.

use std::io::{Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};
use ed25519_compact::{KeyPair, Seed};
use smarty_dongle::ota::{Header, PORT};

/// Updates a smarty P1 dongle over the air, with images signed by your key.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Makes a key pair: the secret seed into FILE (readable by you only), the public key on
    /// standard output, to build the firmware with (`SMARTY_DONGLE_OTA_PUBLIC_KEY`).
    Keygen {
        /// Where to write the secret key (refused if it exists).
        file: PathBuf,
    },
    /// Prints the public key of a secret key file.
    PublicKey {
        /// The secret key file of `keygen`.
        key: PathBuf,
    },
    /// Signs IMAGE (an application image of `espflash save-image`, what `firmware/scripts/check`
    /// writes to `target/images/`) and sends it to the dongle at HOST, which activates it and
    /// restarts.
    Upload {
        /// The secret key file of `keygen`.
        #[arg(long)]
        key: PathBuf,
        /// The dongle: `smarty-XXXXXX`, an address, optionally with `:PORT` (default 3232).
        host: String,
        /// The image.
        image: PathBuf,
        /// Seconds to wait for the dongle's answer after the last byte.
        #[arg(long, default_value_t = 60)]
        timeout_s: u64,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Keygen { file } => {
            let pair = KeyPair::from_seed(Seed::generate());
            write_secret(&file, &hex(pair.sk.seed().as_ref()))?;
            eprintln!(
                "smarty-dongle-ota: secret key in {} (keep it; whoever has it can update your \
                 dongles); build the firmware with:",
                file.display()
            );
            println!("SMARTY_DONGLE_OTA_PUBLIC_KEY={}", hex(pair.pk.as_ref()));
        }
        Command::PublicKey { key } => {
            println!("{}", hex(read_key(&key)?.pk.as_ref()));
        }
        Command::Upload {
            key,
            host,
            image,
            timeout_s,
        } => {
            let pair = read_key(&key)?;
            let image = std::fs::read(&image)
                .with_context(|| format!("cannot read the image {}", image.display()))?;
            let answer = upload(&pair, &host, &image, Duration::from_secs(timeout_s))?;
            println!("{answer}");
        }
    }
    Ok(())
}

/// Signs `image` with `pair` and sends it to the dongle at `host`; its answer (`OK …`).
///
/// # Errors
/// No connection, a cut connection, or the dongle's `ERR …`.
fn upload(pair: &KeyPair, host: &str, image: &[u8], timeout: Duration) -> Result<String> {
    let length = u32::try_from(image.len()).context("the image is larger than 4 GiB")?;
    let header = Header::new(*pair.sk.sign(image, None), length);
    let address = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:{PORT}")
    };
    let target = address
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {address}"))?
        .next()
        .with_context(|| format!("{address} has no address"))?;
    let mut stream = TcpStream::connect_timeout(&target, Duration::from_secs(10))
        .with_context(|| format!("cannot connect to {address} (is the dongle on the network?)"))?;
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(&header.to_bytes())?;
    for (i, chunk) in image.chunks(4096).enumerate() {
        stream.write_all(chunk).with_context(|| {
            format!("the dongle closed the connection after {} bytes", i * 4096)
        })?;
    }
    stream.flush()?;
    stream.set_read_timeout(Some(timeout))?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .context("no answer from the dongle")?;
    let answer = answer.trim().to_owned();
    if !answer.starts_with("OK") {
        bail!("the dongle refused the update: {answer}");
    }
    Ok(answer)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn write_secret(file: &Path, text: &str) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut out = options
        .open(file)
        .with_context(|| format!("cannot create {} (it must not exist)", file.display()))?;
    writeln!(out, "{text}")?;
    Ok(())
}

fn read_key(file: &Path) -> Result<KeyPair> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the key file {}", file.display()))?;
    let text = text.trim();
    let bytes: Vec<u8> = (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2).unwrap_or("zz"), 16))
        .collect::<Result<_, _>>()
        .ok()
        .filter(|b: &Vec<u8>| b.len() == 32)
        .with_context(|| format!("{} is not a key of `keygen`", file.display()))?;
    let seed = Seed::from_slice(&bytes).context("not a key")?;
    Ok(KeyPair::from_seed(seed))
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use smarty_dongle::ota::{HEADER_LEN, Verifier, public_key_from_hex};

    use super::*;

    /// A dongle's update server in miniature: it checks the upload as the firmware does, with
    /// `public_key`, and answers like it.
    fn dongle(public_key: [u8; 32]) -> (String, std::thread::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut header = [0; HEADER_LEN];
            stream.read_exact(&mut header).unwrap();
            let header = Header::parse(&header, 1_966_080).unwrap();
            let mut verifier = Verifier::new(&public_key, &header).unwrap();
            let mut image = vec![0; header.length as usize];
            stream.read_exact(&mut image).unwrap();
            verifier.update(&image);
            let answer = match verifier.finish() {
                Ok(()) => "OK restarting into the new image\n".to_owned(),
                Err(e) => format!("ERR {e}\n"),
            };
            stream.write_all(answer.as_bytes()).unwrap();
            image
        });
        (address, server)
    }

    #[test]
    fn keygen_writes_a_private_key_whose_upload_the_dongle_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ota.key");
        let pair = KeyPair::from_seed(Seed::generate());
        write_secret(&file, &hex(pair.sk.seed().as_ref())).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // An existing key is never overwritten.
        assert!(write_secret(&file, "x").is_err());
        let read = read_key(&file).unwrap();
        assert_eq!(read.pk, pair.pk);
        let public_key = public_key_from_hex(&hex(pair.pk.as_ref())).unwrap();
        let image: Vec<u8> = (0..50_000_u32).map(|i| (i % 253) as u8).collect();
        let (address, server) = dongle(public_key);
        let answer = upload(&read, &address, &image, Duration::from_secs(10)).unwrap();
        assert!(answer.starts_with("OK"), "{answer}");
        assert_eq!(server.join().unwrap(), image);
    }

    #[test]
    fn a_dongle_built_with_another_key_refuses_the_upload() {
        let ours = KeyPair::from_seed(Seed::generate());
        let theirs = KeyPair::from_seed(Seed::generate());
        let (address, server) = dongle(*theirs.pk);
        let err = upload(&ours, &address, b"an image", Duration::from_secs(10)).unwrap_err();
        assert!(
            format!("{err:#}").contains("refused the update: ERR the signature does not verify"),
            "{err:#}"
        );
        server.join().unwrap();
    }
}
