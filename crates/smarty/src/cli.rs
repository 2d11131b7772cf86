//! Command-line interface definitions.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// smarty reads the P1 port of smart electricity meters: Luxembourg's encrypted Smarty
/// (Sagemcom T210-D) and plain DSMR meters.
#[derive(Debug, Parser)]
#[command(
    name = "smarty",
    version,
    about,
    long_about = "smarty reads the P1 port of smart electricity meters: Luxembourg's encrypted \
\"Smarty\" (Sagemcom T210-D) and every plain DSMR / e-MUCS meter. It decrypts (AES-128-GCM, tag \
verified), checks every telegram's CRC and decodes every value with its standard name and unit.",
    after_help = "Examples:\n  \
  smarty demo                                      virtual meter + reader, no hardware needed\n  \
  smarty read /dev/ttyUSB0 --key-file ~/.config/smarty/key\n  \
  smarty read tcp://192.168.1.50:2001 --format json\n  \
  smarty simulate --link /tmp/p1 --key-file key    a virtual meter on a pseudo-terminal\n\n\
Docs: docs/hardware.md (wiring), docs/keys.md (the key from your grid operator), docs/formats.md (output)."
)]
pub struct Cli {
    /// More log output on stderr (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read, decrypt and decode a P1 stream from a serial device, TCP, a file or stdin.
    #[command(after_help = "SOURCE forms:\n  \
  /dev/ttyUSB0, /dev/serial/by-id/…   a serial device (115200 8N1 unless --baud/--serial)\n  \
  tcp://HOST:PORT                      ser2net, socat or a network P1 dongle\n  \
  capture.bin                          a file: read to its end, then exit 0\n  \
  -                                    standard input\n\n\
The key: --key HEX, --key-file PATH or the environment variable SMARTY_KEY (32 hex digits, \
from your grid operator). Plain DSMR meters need no key.\n\n\
Examples:\n  \
  smarty read /dev/ttyUSB0 --key-file ~/.config/smarty/key\n  \
  SMARTY_KEY=$(cat key) smarty read tcp://p1-dongle.local:2001 --format json | jq .\n  \
  smarty read /dev/ttyUSB0 --key-file key --format dsmr | dsmr_console   plain telegrams for DSMR tools\n  \
  smarty read /dev/ttyUSB0 --format raw > capture.hex                    frames for offline decryption\n  \
  smarty read capture.hex --key-file key --quiet                         just the summary")]
    Read(ReadArgs),

    /// Run a virtual Smarty meter that sends realistic encrypted frames.
    #[command(
        after_help = "Where it sends (one of; default: a new pseudo-terminal):\n  \
  --link PATH         a pseudo-terminal, with a symlink PATH to it (read it like a serial device)\n  \
  --listen ADDR       a TCP server like ser2net (every client gets every frame)\n  \
  --output FILE|-     a file or standard output\n\n\
Examples:\n  \
  smarty simulate --link /tmp/p1 --key 000102030405060708090A0B0C0D0E0F &\n  \
  smarty read /tmp/p1 --key 000102030405060708090A0B0C0D0E0F\n  \
  smarty simulate --listen 127.0.0.1:2001 --gas --water\n  \
  smarty simulate --output capture.bin --count 8640 --key-file key     a day of frames, at once"
    )]
    Simulate(SimulateArgs),

    /// The whole job without hardware: a virtual meter, its history, and the service with the
    /// dashboard on http://127.0.0.1:8080.
    #[command(after_help = "Examples:\n  \
  smarty demo                                   dashboard on http://127.0.0.1:8080, telegrams on stdout\n  \
  smarty demo --interval 1s --http 127.0.0.1:9000\n  \
  smarty demo --history-days 0 --count 3        three telegrams, no history")]
    Demo(DemoArgs),

    /// Run as a service: any number of meters, MQTT with Home Assistant discovery, a
    /// plain-telegram proxy, Prometheus metrics; sources reconnect on their own.
    #[command(after_help = "Examples:\n  \
  smarty run --config /etc/smarty/smarty.toml\n  \
  smarty run /dev/ttyUSB0 --key-file key                        history and dashboard on http://127.0.0.1:8080\n  \
  smarty run /dev/ttyUSB0 --key-file key --mqtt mqtt://127.0.0.1:1883     and MQTT\n  \
  smarty config example > smarty.toml && smarty config check smarty.toml")]
    Run(RunArgs),

    /// Write the stored history as CSV or JSON.
    #[command(after_help = "Examples:\n  \
  smarty export --from 2026-11-01 --to 2026-12-01 > november.csv          15-minute rows, CSV\n  \
  smarty export --from 2026-01-01 --resolution day --format json          daily totals as JSON\n  \
  smarty export --config /etc/smarty/smarty.toml --meter home --resolution raw --from 2026-11-22\n\n\
TIME is a local date (2026-11-22, midnight in Europe/Luxembourg), a local time (2026-11-22T10:00), \
RFC 3339 (2026-11-22T10:00:00+01:00) or Unix seconds.")]
    Export(ExportArgs),

    /// Backfill the store from a capture: raw frames (`read --format raw`, binary captures,
    /// `simulate --output`) or a `read --format json` file.
    #[command(after_help = "Examples:\n  \
  smarty import capture.hex --key-file key                 frames recorded with read --format raw\n  \
  smarty import telegrams.jsonl --meter home                 the output of read --format json\n  \
  smarty simulate --start 2026-01-01 --count 100000 --fast -o year.bin --key-file key && \\\n    \
  smarty import year.bin --key-file key                    simulated history\n\n\
Rows already stored (same meter and time) are kept; aggregates of the imported period are rebuilt.")]
    Import(ImportArgs),

    /// Check a configuration file or print a commented example.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

/// Where the history store is: the options shared by `export` and `import`.
#[derive(Debug, Args, Clone)]
pub struct StoreArgs {
    /// The configuration of `smarty run` (its `state_dir` and `[store]` section say where
    /// the store is).
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// The state directory holding smarty.db (default: $STATE_DIRECTORY under systemd,
    /// else $XDG_STATE_HOME/smarty or ~/.local/state/smarty).
    #[arg(long, value_name = "DIR", env = "SMARTY_STATE_DIR")]
    pub state_dir: Option<PathBuf>,

    /// The store file itself (overrides --state-dir and the configuration).
    #[arg(long, value_name = "FILE")]
    pub db: Option<PathBuf>,
}

/// `smarty export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    /// The meter (its configured name; default: the only meter in the store).
    #[arg(long, value_name = "NAME")]
    pub meter: Option<String>,

    /// Start of the period, inclusive (default: the first stored reading).
    #[arg(long, value_name = "TIME", value_parser = crate::output::time::parse_time)]
    pub from: Option<jiff::Timestamp>,

    /// End of the period, exclusive (default: now).
    #[arg(long, value_name = "TIME", value_parser = crate::output::time::parse_time)]
    pub to: Option<jiff::Timestamp>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
    pub format: ExportFormat,

    /// Row resolution: every telegram (raw, kept for the retention period), 15-minute,
    /// hourly, daily or monthly aggregates. Aggregated rows are whole periods: every period
    /// that overlaps --from..--to, even when it starts before --from.
    #[arg(long, value_enum, default_value_t = Resolution::Min15)]
    pub resolution: Resolution,

    /// Write to FILE instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `smarty export --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// Comma-separated values with a header row (RFC 4180).
    Csv,
    /// One JSON document: `{"meter": …, "resolution": …, "rows": [ … ]}`.
    Json,
}

/// A time resolution of stored history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Resolution {
    /// Every stored telegram.
    Raw,
    /// 15-minute periods (the grid tariff's measuring period).
    #[value(name = "15m")]
    #[serde(rename = "15m")]
    Min15,
    /// Hours.
    Hour,
    /// Local days (Europe/Luxembourg).
    Day,
    /// Local months.
    Month,
}

/// `smarty import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The capture: raw frames (binary or the hex lines of `read --format raw`), or JSON lines
    /// of `read --format json`; - for standard input.
    pub file: PathBuf,

    #[command(flatten)]
    pub store: StoreArgs,

    /// The meter the readings belong to (its configured name).
    #[arg(long, default_value = "meter", value_name = "NAME")]
    pub meter: String,

    #[command(flatten)]
    pub key: KeyArgs,

    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `smarty config …`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a configuration file; each mistake is reported with its line.
    Check {
        /// The file.
        file: PathBuf,
    },
    /// Print a commented example configuration.
    Example,
}

/// `smarty run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The configuration file (see `smarty config example`).
    #[arg(long, short, value_name = "FILE", conflicts_with = "source")]
    pub config: Option<PathBuf>,

    /// Without --config: the one meter's source (as for `smarty read`).
    #[arg(value_name = "SOURCE", required_unless_present = "config")]
    pub source: Option<String>,

    /// Without --config: the meter's name in topics and labels.
    #[arg(long, default_value = "meter", value_name = "NAME")]
    pub name: String,

    #[command(flatten)]
    pub key: KeyArgs,

    #[command(flatten)]
    pub serial: SerialArgs,

    /// Without --config: seconds between telegrams (10 for Smarty, 1 for DSMR 5).
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    pub interval: f64,

    /// Publish to this MQTT broker (mqtt://HOST:PORT or mqtts://HOST:PORT).
    #[arg(long, value_name = "URL")]
    pub mqtt: Option<String>,

    /// Also publish each frame as received on `<prefix>/<meter>/raw` (for decryption
    /// elsewhere; without a key, the frames are forwarded undecrypted). Needs --mqtt.
    #[arg(long)]
    pub publish_raw: bool,

    /// Serve the decrypted telegrams to DSMR tools on this address (e.g. 127.0.0.1:2001).
    #[arg(long, value_name = "ADDR")]
    pub proxy: Option<String>,

    /// Serve the dashboard, the API, /metrics and /healthz on this address (default
    /// 127.0.0.1:8080; another address than loopback needs SMARTY_HTTP_TOKEN).
    #[arg(long, value_name = "ADDR", conflicts_with = "no_http")]
    pub http: Option<String>,

    /// No web server.
    #[arg(long)]
    pub no_http: bool,

    /// Where the history store (smarty.db) and the MQTT queue live (default:
    /// $STATE_DIRECTORY under systemd, else $XDG_STATE_HOME/smarty or ~/.local/state/smarty).
    #[arg(long, value_name = "DIR", env = "SMARTY_STATE_DIR")]
    pub state_dir: Option<PathBuf>,

    /// Keep no history.
    #[arg(long)]
    pub no_store: bool,
}

/// Options shared by everything that decrypts.
#[derive(Debug, Args, Clone, Default)]
pub struct KeyArgs {
    /// The meter's decryption key, 32 hex digits (visible to other users in `ps`: prefer
    /// --key-file or SMARTY_KEY).
    #[arg(long, value_name = "HEX", conflicts_with = "key_file")]
    pub key: Option<String>,

    /// A file holding the key (32 hex digits; whitespace, ':' and '-' ignored).
    #[arg(long, value_name = "PATH")]
    pub key_file: Option<PathBuf>,

    /// Authentication key for the AAD (default: Luxembourg's public key
    /// 00112233445566778899AABBCCDDEEFF; Austrian T210-D-r meters have their own).
    #[arg(long, value_name = "HEX", conflicts_with = "aad")]
    pub auth_key: Option<String>,

    /// The whole AAD in hex, including the security byte (e.g. 30FFEE…), or `none` for an
    /// empty AAD.
    #[arg(long, value_name = "HEX|none")]
    pub aad: Option<String>,

    /// Tolerant mode: when the GCM tag does not verify, still accept a telegram whose CRC is
    /// valid, marked unauthenticated.
    #[arg(long)]
    pub no_verify_tag: bool,

    /// Reject a frame whose frame counter is not above the last accepted one (per system
    /// title).
    #[arg(long)]
    pub reject_replay: bool,
}

/// Output formats of `read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    /// Readable: every value with its name and unit.
    #[default]
    Text,
    /// One JSON object per telegram per line (docs/formats.md).
    Json,
    /// The decrypted telegram bytes exactly as the meter wrote them (for DSMR tools).
    Dsmr,
    /// Each frame's bytes as one hex line (for forwarding and offline decryption).
    Raw,
}

/// Serial line settings.
#[derive(Debug, Args, Clone)]
pub struct SerialArgs {
    /// Serial speed in baud.
    #[arg(long, default_value_t = 115_200, value_name = "N")]
    pub baud: u32,

    /// Data bits, parity and stop bits: 8N1 (DSMR 5, Smarty) or 7E1 (DSMR 2.2–4).
    #[arg(long, default_value = "8N1", value_name = "FORMAT", value_parser = parse_serial_format)]
    pub serial: SerialFormat,
}

/// Data bits, parity, stop bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SerialFormat {
    /// 7 or 8.
    pub data_bits: u8,
    /// 'N', 'E' or 'O'.
    pub parity: char,
    /// 1 or 2.
    pub stop_bits: u8,
}

pub fn parse_serial_format(text: &str) -> Result<SerialFormat, String> {
    let bytes = text.as_bytes();
    let bad = || format!("{text:?} is not a serial format like 8N1 or 7E1");
    if bytes.len() != 3 {
        return Err(bad());
    }
    let data_bits = match bytes[0] {
        b'5'..=b'8' => bytes[0] - b'0',
        _ => return Err(bad()),
    };
    let parity = match bytes[1].to_ascii_uppercase() {
        p @ (b'N' | b'E' | b'O') => p as char,
        _ => return Err(bad()),
    };
    let stop_bits = match bytes[2] {
        b'1' | b'2' => bytes[2] - b'0',
        _ => return Err(bad()),
    };
    Ok(SerialFormat {
        data_bits,
        parity,
        stop_bits,
    })
}

/// `smarty read`.
#[derive(Debug, Args)]
pub struct ReadArgs {
    /// Where to read: a serial device, tcp://HOST:PORT, a file, or - for stdin.
    #[arg(value_name = "SOURCE")]
    pub source: String,

    #[command(flatten)]
    pub key: KeyArgs,

    /// Output format.
    #[arg(long, short = 'f', value_enum, default_value_t = Format::Text)]
    pub format: Format,

    /// Print nothing per telegram, only the summary at the end.
    #[arg(long, short)]
    pub quiet: bool,

    /// Stop after N accepted telegrams.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,

    #[command(flatten)]
    pub serial: SerialArgs,

    /// Drop a partial frame that receives no byte for this long (live sources).
    #[arg(long, default_value = "2s", value_name = "DURATION", value_parser = parse_duration)]
    pub frame_gap: Duration,

    /// Largest frame or telegram accepted, in bytes.
    #[arg(long, default_value_t = 16 * 1024, value_name = "BYTES")]
    pub max_frame: usize,
}

/// `smarty simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    #[command(flatten)]
    pub meter: MeterArgs,

    /// Make a pseudo-terminal and a symlink PATH to it.
    #[arg(long, value_name = "PATH", group = "target")]
    pub link: Option<PathBuf>,

    /// Serve frames on a TCP port, like ser2net (e.g. 127.0.0.1:2001).
    #[arg(long, value_name = "ADDR", group = "target")]
    pub listen: Option<String>,

    /// Write frames to a file (at once, without waiting), or - for standard output.
    #[arg(long, short, value_name = "FILE", group = "target")]
    pub output: Option<String>,

    /// Don't wait between frames (simulated time still advances by --interval).
    #[arg(long)]
    pub fast: bool,
}

/// What the virtual meter sends.
#[derive(Debug, Args, Clone)]
pub struct MeterArgs {
    /// Time between frames (a Smarty sends every 10 s).
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = parse_duration)]
    pub interval: Duration,

    /// Stop after N frames (default: run until interrupted).
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,

    /// Encryption key, 32 hex digits (default: SMARTY_KEY, --key-file, or a generated key
    /// printed on stderr).
    #[arg(long, value_name = "HEX", conflicts_with = "key_file")]
    pub key: Option<String>,

    /// A file holding the encryption key.
    #[arg(long, value_name = "PATH")]
    pub key_file: Option<PathBuf>,

    /// Authentication key for the AAD (default: Luxembourg's public key).
    #[arg(long, value_name = "HEX")]
    pub auth_key: Option<String>,

    /// Send plaintext telegrams, like a meter with P1 encryption off or a DSMR meter.
    #[arg(long)]
    pub plain: bool,

    /// Add a gas meter on M-Bus channel 1.
    #[arg(long)]
    pub gas: bool,

    /// Add a water meter on M-Bus channel 2.
    #[arg(long)]
    pub water: bool,

    /// Which firmware's telegram to send.
    #[arg(long, value_enum, default_value_t = Firmware::Full)]
    pub firmware: Firmware,

    /// Peak power of a solar installation in kW (0 for none); exports when the sun shines.
    #[arg(long, default_value_t = 4.0, value_name = "KWP")]
    pub solar_kwp: f64,

    /// First frame counter (default: random).
    #[arg(long, value_name = "N")]
    pub frame_counter: Option<u32>,

    /// Simulated time of the first frame (default: now): a local date or time, RFC 3339, or
    /// Unix seconds. With --fast and --output, makes history: `--start 2025-11-01 --count
    /// 3153600 --fast` is a year at 10 s.
    #[arg(long, value_name = "TIME", value_parser = crate::output::time::parse_time)]
    pub start: Option<jiff::Timestamp>,

    /// Seed of the random household (same seed, same values).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
}

/// Telegram variants of real Smarty firmware (reference §5, §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Firmware {
    /// 2020+ firmware: the full readout list with units, per-phase values.
    Full,
    /// 2019 firmware default list: totals, powers, SMAX, breaker and messages only.
    Basic,
    /// 2018 firmware: no units on reactive power and SMAX, failures/sags/swells, currents.
    Early,
}

/// `smarty demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Time between frames of the virtual meter.
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = parse_duration)]
    pub interval: Duration,

    /// Stop after N telegrams (default: run until interrupted).
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,

    /// Output format of the reader.
    #[arg(long, short = 'f', value_enum, default_value_t = Format::Text)]
    pub format: Format,

    /// Where the dashboard listens.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub http: String,

    /// Where the demo's history lives (default: the demo directory in the state directory,
    /// ~/.local/state/smarty/demo). It starts afresh at each run.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Days of simulated history written before the meter goes live (a telegram every 5
    /// minutes, every minute in the last week, every 10 s in the last two days), so that the
    /// charts have something to show.
    #[arg(long, default_value_t = 62, value_name = "DAYS")]
    pub history_days: u32,
}

/// Parses `10s`, `500ms`, `2m`, `1h` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 10s, 500ms, 2m"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} (use ms, s, m or h)"
            ));
        }
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("{text:?} is not a valid duration"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_and_serial_formats() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("ten").is_err());
        assert_eq!(parse_serial_format("7E1").unwrap().parity, 'E');
        assert!(parse_serial_format("9X1").is_err());
    }
}
