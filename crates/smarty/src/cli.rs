//! Command-line interface definitions.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use smarty_model::period::Resolution;

/// smarty reads the P1 port of smart electricity meters: Luxembourg's encrypted Smarty
/// (Sagemcom T210-D) and plain DSMR meters.
#[derive(Debug, Parser)]
#[command(
    name = "smarty",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("SMARTY_COMMIT"), ")"),
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
  COM8                                 a serial port on Windows (Device Manager, Ports)\n  \
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
  smarty simulate --output capture.bin --count 8640 --key-file key     a day of frames, at once\n\n\
A fleet (docs/fleet.md): many meters, each with its own system title and key, on NATS or MQTT:\n  \
  smarty simulate --meters 1000 --keys-out fleet.csv                   make the meters and their keys\n  \
  smarty simulate --keys fleet.csv --nats nats://127.0.0.1:4222        every meter every 10 s\n  \
  smarty simulate --keys fleet.csv --nats nats://127.0.0.1:4222 --count 360 --fast   an hour at once\n  \
  smarty simulate --keys fleet.csv --mqtt mqtt://127.0.0.1:1883        through NATS's MQTT listener"
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
  smarty run --config smarty.toml --no-store --http 127.0.0.1:9000   flags apply over the file\n  \
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

    /// Manage the history store: move it between SQLite and PostgreSQL.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },

    /// The fleet: many meters' raw frames on NATS JetStream, decrypted with their own keys
    /// into PostgreSQL (docs/fleet.md).
    Fleet {
        #[command(subcommand)]
        command: FleetCommand,
    },

    /// Print the shell completion script for bash, zsh, fish or PowerShell.
    #[command(after_help = "Examples:\n  \
  smarty completions bash > ~/.local/share/bash-completion/completions/smarty\n  \
  smarty completions zsh > ~/.zfunc/_smarty          (with fpath+=~/.zfunc before compinit)\n  \
  smarty completions fish > ~/.config/fish/completions/smarty.fish\n  \
  smarty completions powershell >> $PROFILE\n\n\
The Debian package installs them for bash, zsh and fish.")]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },

    /// Print the manual page (roff) of smarty, or write a page per command into a folder.
    #[command(after_help = "Examples:\n  \
  smarty manpage > smarty.1 && man ./smarty.1\n  \
  smarty manpage --dir man/          smarty.1, smarty-read.1, smarty-fleet-ingest.1, …")]
    Manpage {
        /// Write smarty.1 and a page per command (smarty-read.1, …) into this folder.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// Where the fleet's master key comes from: `--master-key-file` or `SMARTY_MASTER_KEY`.
#[derive(Debug, Args, Clone)]
pub struct MasterKeyArgs {
    /// A file holding the master key (32 or 64 hex digits) that wraps every meter's key;
    /// else the environment variable SMARTY_MASTER_KEY.
    #[arg(long, value_name = "FILE")]
    pub master_key_file: Option<PathBuf>,
}

/// `smarty fleet …`.
#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Manage the meters and their keys.
    Keys {
        #[command(subcommand)]
        command: FleetKeysCommand,
    },
    /// One worker: raw frames from the stream, decrypted and stored, acknowledged after
    /// commit. Run as many as you like, on any machines.
    #[command(after_help = "Example:\n  \
  SMARTY_MASTER_KEY=$(cat master.key) smarty fleet ingest --nats nats://127.0.0.1:4222 \\\n    \
  --database postgres://smarty@db/fleet")]
    Ingest {
        /// The NATS server (`nats://host:4222`, `nats://user:password@host`).
        #[arg(long, value_name = "URL", default_value = "nats://127.0.0.1:4222")]
        nats: String,
        /// The PostgreSQL database (`postgres://user@host/database`).
        #[arg(long, value_name = "URL", env = "DATABASE_URL")]
        database: String,
        #[command(flatten)]
        master: MasterKeyArgs,
        /// Frames stored per transaction at most.
        #[arg(long, value_name = "N", default_value_t = 20_000)]
        batch: usize,
        /// A frame a worker took but did not acknowledge (it died) goes to another after
        /// this many seconds.
        #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
        ack_wait_s: f64,
        /// Partitions of the meters' subjects: the number of the NATS server's mapping
        /// `smarty.raw.*` → `smarty.raw.{{partition(N,1)}}.{{wildcard(1)}}` (docs/fleet.md);
        /// 1 needs no mapping. Every worker of a stream uses the same number.
        #[arg(long, value_name = "N", default_value_t = 1,
              value_parser = clap::value_parser!(u32).range(1..=1000))]
        partitions: u32,
        /// New consumers start at this stream sequence (after a change of --partitions; the
        /// refusal to start says which), instead of the stream's first frame.
        #[arg(long, value_name = "SEQ")]
        start_sequence: Option<u64>,
        /// How long frames set aside stay in the dead-letter stream SMARTY_DEAD.
        #[arg(long, value_name = "DURATION", default_value = "168h", value_parser = parse_duration)]
        dead_letter_max_age: Duration,
        /// Serve /metrics and /healthz on this address (a port alone: on loopback); off
        /// when not given.
        #[arg(long, value_name = "ADDR")]
        http: Option<String>,
    },
    /// The dashboard and the API over the fleet's database: the meter list (search, last
    /// seen, rejections, state), the community view and each meter's dashboard.
    #[command(after_help = "Examples:\n  \
  smarty fleet serve --database postgres://smarty@db/fleet --http 127.0.0.1:8080\n  \
  SMARTY_HTTP_TOKEN=$(cat token) smarty fleet serve --database postgres://smarty@db/fleet --http 0.0.0.0:8080\n  \
  smarty fleet serve --database postgres://smarty@db/fleet --config /etc/smarty/fleet.toml")]
    Serve(FleetServeArgs),
}

/// `smarty fleet serve`'s options.
#[derive(Debug, Args, Clone)]
pub struct FleetServeArgs {
    /// The PostgreSQL database the workers fill.
    #[arg(long, value_name = "URL", env = "DATABASE_URL")]
    pub database: String,
    /// Where the dashboard and the API listen (default 127.0.0.1:8080, or the configuration's
    /// `[http] listen`); an address other than loopback needs an access token
    /// (SMARTY_HTTP_TOKEN or `[http] token_file`, 16 characters or more).
    #[arg(long, value_name = "ADDR")]
    pub http: Option<String>,
    /// A configuration file whose `[http]` (token_file, listen, limits) and `[tariff]`
    /// sections apply; the rest of it is ignored. SMARTY_HTTP_* variables override it.
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// A meter with nothing stored for this long is shown as stale (seconds).
    #[arg(long, value_name = "SECONDS", default_value_t = smarty_web::DEFAULT_STALE_AFTER_S)]
    pub stale_after_s: u64,
}

/// `smarty fleet keys …`.
#[derive(Debug, Subcommand)]
pub enum FleetKeysCommand {
    /// Add meters and their keys from a CSV file with the header
    /// `name,system_title,key,auth_key`, each key wrapped under the master key.
    #[command(after_help = "Example:\n  \
  smarty simulate --meters 100 --keys-out keys.csv\n  \
  smarty fleet keys import keys.csv --database postgres://smarty@db/fleet --master-key-file master.key")]
    Import {
        /// The CSV file.
        file: PathBuf,
        /// The PostgreSQL database.
        #[arg(long, value_name = "URL", env = "DATABASE_URL")]
        database: String,
        #[command(flatten)]
        master: MasterKeyArgs,
    },
    /// Wrap every meter's keys again under a new master key (in one transaction).
    RotateMaster {
        /// The PostgreSQL database.
        #[arg(long, value_name = "URL", env = "DATABASE_URL")]
        database: String,
        #[command(flatten)]
        master: MasterKeyArgs,
        /// A file holding the new master key.
        #[arg(long, value_name = "FILE")]
        new_master_key_file: PathBuf,
    },
}

/// `smarty store …`.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy a whole history into another store (SQLite to PostgreSQL or back), then check
    /// the copy: readings, periods, days and M-Bus captures counted, energies summed, in
    /// both. Nothing is deleted from either; running it again adds nothing.
    #[command(after_help = "Examples:\n  \
  smarty store migrate --from sqlite:/var/lib/smarty/smarty.db --to postgres://smarty@db.example/smarty\n  \
  PGPASSWORD=… smarty store migrate --from ~/.local/state/smarty/smarty.db --to postgres://smarty@localhost/smarty\n  \
  smarty store migrate --from postgres://smarty@db.example/smarty --to sqlite:/tmp/back.db\n\n\
Stop `smarty run` while it migrates (an SQLite store has one writer); then point its \
[store] url (or DATABASE_URL) at the new store. The password comes from the URL, PGPASSWORD \
or ~/.pgpass.")]
    Migrate {
        /// The store to copy: an SQLite file (`PATH` or `sqlite:PATH`) or
        /// `postgres://user@host/database`.
        #[arg(long, value_name = "FILE|URL")]
        from: String,
        /// The store to copy into (created when missing).
        #[arg(long, value_name = "FILE|URL")]
        to: String,
        /// No progress on standard error.
        #[arg(long, short)]
        quiet: bool,
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

    /// The store itself: an SQLite file (`PATH` or `sqlite:PATH`) or a PostgreSQL database
    /// (`postgres://user@host/database`); overrides --state-dir, the configuration and
    /// DATABASE_URL.
    #[arg(long, visible_alias = "db", value_name = "FILE|URL")]
    pub database: Option<String>,
}

/// `smarty export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    /// The meter (its configured name; default: the only meter in the store).
    #[arg(long, value_name = "NAME", value_parser = parse_meter_name)]
    pub meter: Option<String>,

    /// Start of the period, inclusive (default: the first stored reading).
    #[arg(long, value_name = "TIME", value_parser = smarty_model::time::parse_time)]
    pub from: Option<jiff::Timestamp>,

    /// End of the period, exclusive (default: now).
    #[arg(long, value_name = "TIME", value_parser = smarty_model::time::parse_time)]
    pub to: Option<jiff::Timestamp>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
    pub format: ExportFormat,

    /// Row resolution: every telegram (raw, kept for the retention period), 15-minute,
    /// hourly, daily or monthly aggregates. Aggregated rows are whole periods: every period
    /// that overlaps --from..--to, even when it starts before --from.
    #[arg(long, value_enum, default_value_t = ResolutionArg::Min15)]
    pub resolution: ResolutionArg,

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

/// `smarty export --resolution`: a [`Resolution`] as the command line names and explains it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ResolutionArg {
    /// Every stored telegram.
    Raw,
    /// 15-minute periods (the grid tariff's measuring period).
    #[value(name = "15m")]
    Min15,
    /// Hours.
    Hour,
    /// Local days (Europe/Luxembourg).
    Day,
    /// Local months.
    Month,
}

impl From<ResolutionArg> for Resolution {
    fn from(arg: ResolutionArg) -> Resolution {
        match arg {
            ResolutionArg::Raw => Resolution::Raw,
            ResolutionArg::Min15 => Resolution::Min15,
            ResolutionArg::Hour => Resolution::Hour,
            ResolutionArg::Day => Resolution::Day,
            ResolutionArg::Month => Resolution::Month,
        }
    }
}

/// `smarty import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The capture: raw frames (binary or the hex lines of `read --format raw`), or JSON lines
    /// of `read --format json`; - for standard input.
    pub file: PathBuf,

    #[command(flatten)]
    pub store: StoreArgs,

    /// The meter the readings belong to (its configured name: letters, digits, '_' and '-',
    /// as in `smarty run`).
    #[arg(long, default_value = "meter", value_name = "NAME", value_parser = parse_meter_name)]
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
    /// Validate a configuration file with the environment's overrides; every mistake is
    /// reported with its line and column (or its environment variable).
    Check {
        /// The file.
        file: PathBuf,
    },
    /// Print a commented example configuration.
    Example,
}

/// `smarty run`.
///
/// The flags of the outputs and the state directory apply over the configuration file (and
/// over the environment); the meter's flags (SOURCE, --name, the key, serial and interval
/// flags) describe the one meter of a service without a file, and are refused next to
/// `--config`, whose file may hold several meters.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The configuration file (see `smarty config example`). The output flags below apply
    /// over it; the meter's flags are refused (set them in its `[[meter]]` tables).
    #[arg(long, short, value_name = "FILE", conflicts_with_all = [
        "source", "name", "key", "key_file", "auth_key", "aad", "no_verify_tag",
        "reject_replay", "baud", "serial", "interval",
    ])]
    pub config: Option<PathBuf>,

    /// Without --config: the one meter's source (as for `smarty read`).
    #[arg(value_name = "SOURCE", required_unless_present = "config")]
    pub source: Option<String>,

    /// Without --config: the meter's name in topics and labels.
    #[arg(long, default_value = "meter", value_name = "NAME", value_parser = parse_meter_name)]
    pub name: String,

    #[command(flatten)]
    pub key: KeyArgs,

    #[command(flatten)]
    pub serial: SerialArgs,

    /// Without --config: time between telegrams (10s for Smarty, 1s for DSMR 5); silence for
    /// three intervals reopens the source. Seconds (10, 0.5) or with a unit (500ms, 10s, 1m).
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = parse_meter_interval)]
    pub interval: Duration,

    /// Publish to this MQTT broker (mqtt://HOST:PORT or mqtts://HOST:PORT); with --config,
    /// instead of its `[mqtt]` url.
    #[arg(long, value_name = "URL")]
    pub mqtt: Option<String>,

    /// Publish each frame as received, decrypted here or not (without a key they are only
    /// forwarded). With a URL, to a fleet (docs/fleet.md):
    /// `nats://HOST:PORT` natively on `smarty.raw.<system title>` with message ids (the
    /// stream SMARTY_RAW created or checked), or `mqtt://HOST:PORT` binary on
    /// `smarty/raw/<system title>` at QoS 1 (NATS's MQTT listener); instead of the `[fleet]`
    /// url. Without a URL, in hex on `<prefix>/<meter>/raw` of the MQTT output (needs --mqtt
    /// or an `[mqtt]` section; a `smarty run mqtt://HOST/smarty/<meter>/raw` elsewhere reads
    /// them).
    #[arg(long, value_name = "URL", num_args = 0..=1, value_parser = parse_publish_raw)]
    pub publish_raw: Option<Option<String>>,

    /// Serve the decrypted telegrams to DSMR tools on this address (e.g. 127.0.0.1:2001);
    /// with --config, instead of its `[proxy]` listen.
    #[arg(long, value_name = "ADDR")]
    pub proxy: Option<String>,

    /// Serve the dashboard, the API, /metrics and /healthz on this address (default
    /// 127.0.0.1:8080; another address than loopback needs SMARTY_HTTP_TOKEN); with
    /// --config, instead of its `[http]` listen, and on even if the file turns it off.
    #[arg(long, value_name = "ADDR", conflicts_with = "no_http")]
    pub http: Option<String>,

    /// No web server (also over the configuration's `[http]`).
    #[arg(long)]
    pub no_http: bool,

    /// Where the history store (smarty.db) and the MQTT queue live (default:
    /// $STATE_DIRECTORY under systemd, else $XDG_STATE_HOME/smarty or ~/.local/state/smarty).
    #[arg(long, value_name = "DIR", env = "SMARTY_STATE_DIR")]
    pub state_dir: Option<PathBuf>,

    /// Keep no history (also over the configuration's `[store]`).
    #[arg(long, conflicts_with = "database")]
    pub no_store: bool,

    /// The history store: an SQLite file (`PATH` or `sqlite:PATH`) or a PostgreSQL database
    /// (`postgres://user@host/database`); over the configuration's `[store]` path or url and
    /// DATABASE_URL (docs/postgres.md).
    #[arg(long, visible_alias = "db", value_name = "FILE|URL")]
    pub database: Option<String>,
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
    /// Serial speed in baud (50 to 4000000).
    #[arg(long, default_value_t = 115_200, value_name = "N",
          value_parser = clap::value_parser!(u32).range(50..=4_000_000))]
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

    /// Stop after N accepted telegrams (1 or more).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,

    #[command(flatten)]
    pub serial: SerialArgs,

    /// Drop a partial frame that receives no byte for this long (live sources; 1ms to 1h).
    #[arg(long, default_value = "2s", value_name = "DURATION", value_parser = parse_frame_gap)]
    pub frame_gap: Duration,

    /// Largest frame or telegram accepted, in bytes (64 to 16777216).
    #[arg(long, default_value_t = 16 * 1024, value_name = "BYTES", value_parser = parse_max_frame)]
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

    /// A fleet: make N virtual meters, each with its own system title and key, write them to
    /// --keys-out (CSV: name,system_title,key,auth_key) and exit.
    #[arg(long, value_name = "N", requires = "keys_out",
          conflicts_with_all = ["target", "keys", "key", "key_file", "auth_key", "plain"],
          value_parser = clap::value_parser!(u32).range(1..=MAX_FLEET_METERS))]
    pub meters: Option<u32>,

    /// Where --meters writes the keys of its meters: a new file, readable by its owner only.
    #[arg(long, value_name = "FILE", requires = "meters")]
    pub keys_out: Option<PathBuf>,

    /// A fleet: run the meters of this keys file (from --meters --keys-out, or any file of
    /// that layout), publishing their frames to --nats or --mqtt.
    #[arg(long, value_name = "FILE", requires = "fleet_target",
          conflicts_with_all = ["key", "key_file", "auth_key", "plain", "frame_counter", "start"])]
    pub keys: Option<PathBuf>,

    /// Publish the fleet's frames to NATS JetStream (nats://HOST:PORT, perhaps with
    /// `USER:PASSWORD@`): on `smarty.raw.<system title>`, with the message id
    /// `<system title>:<frame counter>`, into the stream SMARTY_RAW (created when missing).
    #[arg(long, value_name = "URL", requires = "keys", groups = ["target", "fleet_target"])]
    pub nats: Option<String>,

    /// Publish the fleet's frames to an MQTT broker (mqtt://HOST:PORT or mqtts://HOST:PORT,
    /// perhaps with `USER:PASSWORD@`; MQTT 3.1.1, QoS 1) on `smarty/raw/<system title>`:
    /// NATS's MQTT listener, or any broker.
    #[arg(long, value_name = "URL", requires = "keys", groups = ["target", "fleet_target"])]
    pub mqtt: Option<String>,

    /// Where the fleet's run is remembered, so that frame counters, telegram times and
    /// energy registers go on from there in the next run (default: the keys file with
    /// `.state` added).
    #[arg(long, value_name = "FILE", requires = "keys")]
    pub state: Option<PathBuf>,
}

/// The most meters `simulate --meters` makes.
pub const MAX_FLEET_METERS: i64 = 10_000_000;

/// What the virtual meter sends.
#[derive(Debug, Args, Clone)]
pub struct MeterArgs {
    /// Time between frames (a Smarty sends every 10 s): seconds (10, 0.5) or with a unit
    /// (500ms, 10s, 1m); 1ms to 24h.
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = parse_send_interval)]
    pub interval: Duration,

    /// Stop after N frames (default: run until interrupted); with --keys, N frames of each
    /// meter.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
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

    /// Peak power of a solar installation in kW (0 for none, at most 1000); exports when the
    /// sun shines.
    #[arg(long, default_value_t = 4.0, value_name = "KWP", value_parser = parse_solar_kwp)]
    pub solar_kwp: f64,

    /// First frame counter (default: random).
    #[arg(long, value_name = "N")]
    pub frame_counter: Option<u32>,

    /// Simulated time of the first frame (default: now): a local date or time, RFC 3339, or
    /// Unix seconds. With --fast and --output, makes history: `--start 2025-11-01 --count
    /// 3153600 --fast` is a year at 10 s.
    #[arg(long, value_name = "TIME", value_parser = smarty_model::time::parse_time)]
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
    /// Time between frames of the virtual meter: seconds (10, 0.5) or with a unit (500ms,
    /// 10s, 1m); 1ms to 24h.
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = parse_send_interval)]
    pub interval: Duration,

    /// Stop after N telegrams (default: run until interrupted).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
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
    #[arg(long, default_value_t = 62, value_name = "DAYS",
          value_parser = clap::value_parser!(u32).range(0..=i64::from(MAX_HISTORY_DAYS)))]
    pub history_days: u32,
}

/// The most days of history `smarty demo --history-days` writes.
pub const MAX_HISTORY_DAYS: u32 = 3660;

/// Parses a duration, the one syntax of every duration flag: a number of seconds (`10`,
/// `0.5`) or numbers with units (`500ms`, `10s`, `2m`, `1h`, `1m30s`; jiff's friendly
/// format).
///
/// # Errors
/// Text that is not a duration, a negative one, or one beyond [`Duration::MAX`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let bad = || {
        format!(
            "{text:?} is not a duration: give seconds (10, 0.5) or a number with a unit (500ms, \
             10s, 2m, 1h)"
        )
    };
    let seconds = match text.parse::<f64>() {
        Ok(seconds) => seconds,
        Err(_) => {
            let signed: jiff::SignedDuration = text.parse().map_err(|_| bad())?;
            signed.as_secs_f64()
        }
    };
    if seconds.is_nan() {
        return Err(bad());
    }
    if seconds < 0.0 {
        return Err(format!("{text:?}: a duration cannot be negative"));
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("{text:?} is too long a duration"))
}

/// [`parse_duration`] within `min..=max`.
fn duration_within(text: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration < min || duration > max {
        let show = |d: Duration| {
            jiff::SignedDuration::try_from(d)
                .map_or_else(|_| format!("{d:?}"), |d| format!("{d:#}"))
        };
        return Err(format!("give from {} to {}", show(min), show(max)));
    }
    Ok(duration)
}

/// The interval of a meter (`smarty run --interval`): [`crate::config::METER_INTERVAL_S`].
///
/// # Errors
/// As [`parse_duration`], or out of range.
pub fn parse_meter_interval(text: &str) -> Result<Duration, String> {
    let range = crate::config::METER_INTERVAL_S;
    duration_within(
        text,
        Duration::from_secs_f64(*range.start()),
        Duration::from_secs_f64(*range.end()),
    )
}

/// The interval of the virtual meter (`simulate`, `demo`): 1 ms to 24 h.
///
/// # Errors
/// As [`parse_duration`], or out of range.
pub fn parse_send_interval(text: &str) -> Result<Duration, String> {
    duration_within(text, Duration::from_millis(1), Duration::from_secs(86_400))
}

/// `read --frame-gap`: 1 ms to 1 h.
///
/// # Errors
/// As [`parse_duration`], or out of range.
pub fn parse_frame_gap(text: &str) -> Result<Duration, String> {
    duration_within(text, Duration::from_millis(1), Duration::from_secs(3600))
}

/// `read --max-frame`: 64 bytes to 16 MiB.
///
/// # Errors
/// Not a number, or out of range.
pub fn parse_max_frame(text: &str) -> Result<usize, String> {
    const RANGE: std::ops::RangeInclusive<usize> = 64..=16 * 1024 * 1024;
    match text.trim().parse::<usize>() {
        Ok(n) if RANGE.contains(&n) => Ok(n),
        _ => Err(format!(
            "give a number of bytes from {} to {}",
            RANGE.start(),
            RANGE.end()
        )),
    }
}

/// `simulate --solar-kwp`: 0 to 1000 kW.
///
/// # Errors
/// Not a number, or out of range.
pub fn parse_solar_kwp(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(kwp) if (0.0..=1000.0).contains(&kwp) => Ok(kwp),
        _ => Err("give the peak power in kW, from 0 to 1000".to_owned()),
    }
}

/// A meter name as `smarty run` takes it ([`crate::config::check_meter_name`]).
///
/// # Errors
/// A name breaking the rule.
pub fn parse_meter_name(text: &str) -> Result<String, String> {
    crate::config::check_meter_name(text).map(|()| text.to_owned())
}

/// Parses the URL of `--publish-raw URL`: a fleet's NATS servers or MQTT broker.
///
/// # Errors
/// Anything else, saying how to write the flag without a URL (a source after it is taken
/// for its value).
pub fn parse_publish_raw(text: &str) -> Result<String, String> {
    crate::service::fleet_feed::Target::parse(text)
        .map(|_| text.to_owned())
        .map_err(|e| {
            format!(
                "{e}; for hex on the MQTT output's <prefix>/<meter>/raw, give --publish-raw \
                 without a URL after SOURCE (or as --publish-raw=)"
            )
        })
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
        assert_eq!(parse_duration("0.5").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        for bad in ["ten", "", "-1", "-1s", "nan", "inf", "1e300", "10 parsecs"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_serial_format("7E1").unwrap().parity, 'E');
        assert!(parse_serial_format("9X1").is_err());
    }

    /// Every numeric flag of every command, each given values at and beyond the edges of
    /// every type: the parser never panics, and a refusal names the flag.
    #[test]
    fn no_value_of_a_numeric_flag_panics_and_refusals_name_the_flag() {
        let extremes = [
            "0",
            "-0",
            "-1",
            "1",
            "nan",
            "inf",
            "-inf",
            "1e300",
            "2e19",
            "0.000001",
            "18446744073709551615",
            "18446744073709551616",
            "9223372036854775807",
            "-9223372036854775808",
            "4294967296",
            "65536",
            "1e",
            "10x",
            "",
        ];
        let flags: [(&[&str], &str); 20] = [
            (&["run", "-"], "--interval"),
            (&["run", "-"], "--baud"),
            (&["read", "-"], "--count"),
            (&["read", "-"], "--baud"),
            (&["read", "-"], "--frame-gap"),
            (&["read", "-"], "--max-frame"),
            (&["simulate"], "--interval"),
            (&["simulate"], "--count"),
            (&["simulate"], "--solar-kwp"),
            (&["simulate"], "--frame-counter"),
            (&["simulate"], "--seed"),
            (&["simulate"], "--start"),
            (&["simulate", "--keys-out", "f.csv"], "--meters"),
            (&["demo"], "--interval"),
            (&["demo"], "--count"),
            (&["demo"], "--history-days"),
            (&["export"], "--from"),
            (&["export"], "--to"),
            (&["export"], "--meter"),
            (&["import", "-"], "--meter"),
        ];
        for (command, flag) in flags {
            for value in extremes {
                let arg = format!("{flag}={value}");
                let argv = ["smarty"]
                    .iter()
                    .chain(command)
                    .copied()
                    .chain([arg.as_str()]);
                if let Err(e) = Cli::try_parse_from(argv) {
                    let message = e.to_string();
                    assert!(message.contains(flag), "{command:?} {arg}: {message}");
                }
            }
        }
    }

    #[test]
    fn ranges_of_numeric_flags() {
        let ok = |args: &[&str]| Cli::try_parse_from(["smarty"].iter().chain(args)).is_ok();
        assert!(ok(&["run", "-", "--interval", "0.1"]));
        assert!(!ok(&["run", "-", "--interval", "0.09"]));
        assert!(ok(&["run", "-", "--interval", "24h"]));
        assert!(!ok(&["run", "-", "--interval", "86401"]));
        assert!(!ok(&["run", "-", "--baud", "0"]));
        assert!(!ok(&["read", "-", "--count", "0"]));
        assert!(!ok(&["read", "-", "--max-frame", "63"]));
        assert!(!ok(&["read", "-", "--frame-gap", "0"]));
        assert!(ok(&["simulate", "--interval", "1ms"]));
        assert!(!ok(&["simulate", "--interval", "0"]));
        assert!(!ok(&["simulate", "--solar-kwp", "nan"]));
        assert!(ok(&["simulate", "--solar-kwp", "0"]));
        assert!(ok(&["simulate", "--meters", "1", "--keys-out", "f.csv"]));
        assert!(!ok(&["simulate", "--meters", "0", "--keys-out", "f.csv"]));
        assert!(!ok(&[
            "simulate",
            "--meters",
            "10000001",
            "--keys-out",
            "f.csv"
        ]));
        assert!(ok(&["simulate", "--keys", "f.csv", "--nats", "nats://n"]));
        assert!(!ok(&[
            "simulate", "--keys", "f.csv", "--nats", "nats://n", "--mqtt", "mqtt://m"
        ]));
        assert!(!ok(&[
            "simulate", "--keys", "f.csv", "--nats", "nats://n", "--link", "/tmp/p1"
        ]));
        assert!(!ok(&["simulate", "--nats", "nats://n"]));
        assert!(ok(&["demo", "--history-days", "3660"]));
        assert!(!ok(&["demo", "--history-days", "3661"]));
        assert!(!ok(&["import", "-", "--meter", "a b"]));
        assert!(ok(&["import", "-", "--meter", "home-1_b"]));
    }
}
