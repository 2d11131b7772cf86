//! The JetStream stream that holds the raw frames: created on start when missing, checked
//! when it exists.
//!
//! | setting | value |
//! |---|---|
//! | name | `SMARTY_RAW` ([`StreamConfig::name`]) |
//! | subjects | `smarty.raw.>` ([`SUBJECTS`]): every meter's subject ([`crate::subject`]) |
//! | retention | limits: a frame stays for [`StreamConfig::max_age`] (7 days) whatever the consumers did, so that a worker can be added, or the database restored, and the frames of the last days read again |
//! | storage | files |
//! | replicas | [`StreamConfig::replicas`]: 1 on one server, 3 in a cluster |
//! | duplicate window | [`StreamConfig::duplicate_window`] (10 minutes): a frame published again within it under the same message id (`<system title>:<frame counter>`) is dropped by the server and acknowledged as a duplicate |
//!
//! An existing stream of that name is never changed silently: other subjects or another
//! retention are refused ([`StreamError::Subjects`], [`StreamError::Retention`]); other
//! limits (age, replicas, duplicate window, size) are reported as [`Difference`]s and logged,
//! and applied only with [`StreamConfig::update`].

use std::time::Duration;

use async_nats::jetstream::{self, stream};

/// The subjects of the stream: every raw frame's subject.
pub const SUBJECTS: &str = "smarty.raw.>";

/// The stream's name unless configured otherwise.
pub const DEFAULT_NAME: &str = "SMARTY_RAW";

/// The dead-letter stream's name unless configured otherwise.
pub const DEAD_LETTER_NAME: &str = "SMARTY_DEAD";

/// The dead-letter stream's subjects: `smarty.dead.<reason>.<title>`.
pub const DEAD_LETTER_SUBJECTS: &str = "smarty.dead.>";

/// How the stream is made (and what an existing one is checked against).
///
/// # Example
/// ```
/// let mut config = smarty_fleet::stream::StreamConfig::default();
/// config.replicas = 3;
/// assert_eq!(config.name, "SMARTY_RAW");
/// assert!(config.check().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamConfig {
    /// The stream's name (default `SMARTY_RAW`): letters, digits, `-` and `_`.
    pub name: String,
    /// Its subjects (default [`SUBJECTS`]; [`DEAD_LETTER_SUBJECTS`] for the dead letters).
    pub subjects: String,
    /// How long a frame stays in the stream (default 7 days); `Duration::ZERO` keeps frames
    /// until [`StreamConfig::max_bytes`] is reached.
    pub max_age: Duration,
    /// The most bytes the stream holds before dropping its oldest frames (default `None`: no
    /// limit but the server's).
    pub max_bytes: Option<u64>,
    /// Servers holding a copy of each frame: 1 (default) on one server, 3 in a cluster (a
    /// frame is acknowledged once a majority stored it; one server may fail). 1 to 5.
    pub replicas: usize,
    /// How long the server remembers message ids to drop a publisher's resends (default 10
    /// minutes; at most `max_age`).
    pub duplicate_window: Duration,
    /// Apply this configuration's limits (age, size, replicas, duplicate window) to an
    /// existing stream that differs, instead of only reporting the differences (default
    /// `false`). Subjects and retention are never changed.
    pub update: bool,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            name: DEFAULT_NAME.to_owned(),
            subjects: SUBJECTS.to_owned(),
            max_age: Duration::from_secs(7 * 24 * 3600),
            max_bytes: None,
            replicas: 1,
            duplicate_window: Duration::from_secs(600),
            update: false,
        }
    }
}

impl StreamConfig {
    /// The dead-letter stream (`SMARTY_DEAD` on `smarty.dead.>`): the frames workers set
    /// aside, kept `max_age` (default 7 days).
    ///
    /// # Example
    /// ```
    /// use std::time::Duration;
    /// let dead = smarty_fleet::stream::StreamConfig::dead_letters(Duration::from_secs(86_400));
    /// assert_eq!((dead.name.as_str(), dead.subjects.as_str()), ("SMARTY_DEAD", "smarty.dead.>"));
    /// ```
    pub fn dead_letters(max_age: Duration) -> StreamConfig {
        StreamConfig {
            name: DEAD_LETTER_NAME.to_owned(),
            subjects: DEAD_LETTER_SUBJECTS.to_owned(),
            max_age,
            duplicate_window: Duration::from_secs(120).min(if max_age.is_zero() {
                Duration::from_secs(120)
            } else {
                max_age
            }),
            ..StreamConfig::default()
        }
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`StreamError::Config`]: a name JetStream refuses, replicas outside 1 to 5, a
    /// duplicate window of zero or longer than `max_age`, or `max_bytes` beyond `i64::MAX`.
    pub fn check(&self) -> Result<(), StreamError> {
        let bad = |what: String| Err(StreamError::Config(what));
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return bad(format!(
                "the stream name {:?} must be letters, digits, '-' and '_'",
                self.name
            ));
        }
        if !(1..=5).contains(&self.replicas) {
            return bad(format!(
                "replicas must be 1 to 5, not {} (3 in a cluster)",
                self.replicas
            ));
        }
        if self.duplicate_window.is_zero() {
            return bad("the duplicate window must be longer than zero".to_owned());
        }
        if !self.max_age.is_zero() && self.duplicate_window > self.max_age {
            return bad(format!(
                "the duplicate window ({:?}) cannot be longer than the maximum age ({:?})",
                self.duplicate_window, self.max_age
            ));
        }
        if self
            .max_bytes
            .is_some_and(|b| b == 0 || i64::try_from(b).is_err())
        {
            return bad("max_bytes must be from 1 to 2^63 - 1".to_owned());
        }
        Ok(())
    }

    /// The JetStream configuration of a new stream.
    fn jetstream(&self) -> stream::Config {
        stream::Config {
            name: self.name.clone(),
            subjects: vec![self.subjects.clone()],
            retention: stream::RetentionPolicy::Limits,
            discard: stream::DiscardPolicy::Old,
            storage: stream::StorageType::File,
            max_age: self.max_age,
            max_bytes: self.max_bytes_jetstream(),
            max_messages: -1,
            max_messages_per_subject: -1,
            max_consumers: -1,
            num_replicas: self.replicas,
            duplicate_window: self.duplicate_window,
            description: Some(if self.subjects == SUBJECTS {
                "smarty: raw frames of the fleet's meters (docs/fleet.md)".into()
            } else {
                "smarty: frames the fleet's workers set aside (docs/fleet.md)".into()
            }),
            ..Default::default()
        }
    }

    /// `max_bytes` as JetStream has it: -1 for none.
    fn max_bytes_jetstream(&self) -> i64 {
        self.max_bytes
            .and_then(|b| i64::try_from(b).ok())
            .unwrap_or(-1)
    }

    /// How an existing stream's limits differ from this configuration.
    fn differences(&self, found: &stream::Config) -> Vec<Difference> {
        let mut out = Vec::new();
        let mut differ = |setting: &'static str, found: String, configured: String| {
            if found != configured {
                out.push(Difference {
                    setting,
                    found,
                    configured,
                });
            }
        };
        differ(
            "max_age",
            format!("{:?}", found.max_age),
            format!("{:?}", self.max_age),
        );
        differ(
            "max_bytes",
            found.max_bytes.to_string(),
            self.max_bytes_jetstream().to_string(),
        );
        differ(
            "replicas",
            found.num_replicas.to_string(),
            self.replicas.to_string(),
        );
        differ(
            "duplicate_window",
            format!("{:?}", found.duplicate_window),
            format!("{:?}", self.duplicate_window),
        );
        out
    }
}

/// A limit in which an existing stream differs from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// `max_age`, `max_bytes`, `replicas` or `duplicate_window`.
    pub setting: &'static str,
    /// The stream's value.
    pub found: String,
    /// The configured value.
    pub configured: String,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is {} (configured: {})",
            self.setting, self.found, self.configured
        )
    }
}

/// What [`ensure`] found or did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Ensured {
    /// The stream did not exist and was created.
    Created(Box<stream::Info>),
    /// The stream exists with the right subjects and retention. `differences` lists the
    /// limits in which it differs from the configuration (empty when none), applied when
    /// `updated`.
    Checked {
        /// The stream as found (or as updated).
        info: Box<stream::Info>,
        /// Limits that differ (or differed, when updated).
        differences: Vec<Difference>,
        /// The differences were applied ([`StreamConfig::update`]).
        updated: bool,
    },
}

impl Ensured {
    /// The stream's information: configuration and state (messages, bytes, sequences).
    pub fn info(&self) -> &stream::Info {
        match self {
            Ensured::Created(info) | Ensured::Checked { info, .. } => info,
        }
    }
}

/// Why the stream could not be created or is unfit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// A setting of [`StreamConfig`] that cannot work.
    #[error("stream settings: {0}")]
    Config(String),
    /// A stream of that name exists for other subjects: it is left alone.
    #[error(
        "the stream {name} exists with subjects {found:?}, not [\"{expected}\"]: it is left as it \
         is; give the fleet another stream name, or change or remove that stream (nats stream \
         edit / nats stream rm)"
    )]
    Subjects {
        /// The stream's name.
        name: String,
        /// Its subjects.
        found: Vec<String>,
        /// The subjects it should have.
        expected: String,
    },
    /// A stream of that name exists with another retention policy: it is left alone.
    #[error(
        "the stream {name} exists with retention {found}, not limits: frames would leave it \
         when consumed; it is left as it is: give the fleet another stream name, or remove \
         that stream (nats stream rm)"
    )]
    Retention {
        /// The stream's name.
        name: String,
        /// Its retention policy (`interest`, `workqueue`).
        found: String,
    },
    /// Another stream holds subjects that overlap `smarty.raw.>`.
    #[error(
        "cannot create the stream {name}: the stream {other} already takes subjects that overlap \
         {subjects}; use that stream (give its name) or change it"
    )]
    Overlap {
        /// The stream that was to be created.
        name: String,
        /// Its subjects.
        subjects: String,
        /// The stream that holds the subjects (`?` when the server did not say).
        other: String,
    },
    /// The server has no JetStream (started without `-js` or a `jetstream` block).
    #[error("the NATS server has no JetStream: start it with -js or a jetstream {{ }} block")]
    NoJetStream,
    /// The server refused or did not answer a request.
    #[error("stream {name}: {what}: {source}")]
    Request {
        /// The stream's name.
        name: String,
        /// What was asked (`reading`, `creating`, `updating`).
        what: &'static str,
        /// What went wrong.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Creates the stream of `config` if it does not exist, or checks the existing one.
///
/// # Errors
/// See [`StreamError`]: bad settings, a stream of that name unfit for the fleet (never
/// changed), overlapping subjects, no JetStream, or the server refusing or not answering.
pub async fn ensure(
    context: &jetstream::Context,
    config: &StreamConfig,
) -> Result<Ensured, StreamError> {
    use jetstream::ErrorCode;
    use jetstream::context::{CreateStreamErrorKind, GetStreamErrorKind};

    config.check()?;
    let name = config.name.clone();
    let request =
        |what: &'static str, e: Box<dyn std::error::Error + Send + Sync>| StreamError::Request {
            name: name.clone(),
            what,
            source: e,
        };
    match context.get_stream(&config.name).await {
        Ok(mut found) => {
            let info = found
                .info()
                .await
                .map_err(|e| request("reading", e.into()))?
                .clone();
            check_existing(context, config, info).await
        }
        Err(e) => match e.kind() {
            GetStreamErrorKind::JetStream(js) if js.error_code() == ErrorCode::STREAM_NOT_FOUND => {
                match context.create_stream(config.jetstream()).await {
                    Ok(mut created) => {
                        let info = created
                            .info()
                            .await
                            .map_err(|e| request("reading", e.into()))?
                            .clone();
                        tracing::info!(stream = %config.name, replicas = config.replicas,
                            "JetStream stream {} created for {}", config.name, config.subjects);
                        Ok(Ensured::Created(Box::new(info)))
                    }
                    Err(e) => match e.kind() {
                        CreateStreamErrorKind::JetStream(js)
                            if js.error_code() == ErrorCode::STREAM_SUBJECT_OVERLAP =>
                        {
                            let other = context
                                .stream_by_subject(config.subjects.replace('>', "*"))
                                .await
                                .unwrap_or_else(|_| "?".to_owned());
                            Err(StreamError::Overlap {
                                name: config.name.clone(),
                                subjects: config.subjects.clone(),
                                other,
                            })
                        }
                        // Another program created it meanwhile (differently): check that one.
                        CreateStreamErrorKind::JetStream(js)
                            if js.error_code() == ErrorCode::STREAM_NAME_EXIST =>
                        {
                            let mut found = context
                                .get_stream(&config.name)
                                .await
                                .map_err(|e| request("reading", e.into()))?;
                            let info = found
                                .info()
                                .await
                                .map_err(|e| request("reading", e.into()))?
                                .clone();
                            check_existing(context, config, info).await
                        }
                        CreateStreamErrorKind::JetStreamUnavailable => {
                            Err(StreamError::NoJetStream)
                        }
                        _ => Err(request("creating", e.into())),
                    },
                }
            }
            GetStreamErrorKind::JetStream(js)
                if js.error_code() == ErrorCode::JETSTREAM_NOT_ENABLED
                    || js.error_code() == ErrorCode::JETSTREAM_NOT_ENABLED_FOR_ACCOUNT =>
            {
                Err(StreamError::NoJetStream)
            }
            GetStreamErrorKind::Request
                if std::error::Error::source(&e)
                    .and_then(|s| s.downcast_ref::<jetstream::context::RequestError>())
                    .is_some_and(|r| {
                        r.kind() == jetstream::context::RequestErrorKind::NoResponders
                    }) =>
            {
                Err(StreamError::NoJetStream)
            }
            _ => Err(request("reading", e.into())),
        },
    }
}

/// Checks (and with `config.update`, updates) the existing stream `info`.
async fn check_existing(
    context: &jetstream::Context,
    config: &StreamConfig,
    info: stream::Info,
) -> Result<Ensured, StreamError> {
    let found = &info.config;
    if found.subjects != [config.subjects.clone()] {
        return Err(StreamError::Subjects {
            name: config.name.clone(),
            found: found.subjects.clone(),
            expected: config.subjects.clone(),
        });
    }
    if found.retention != stream::RetentionPolicy::Limits {
        let policy = match found.retention {
            stream::RetentionPolicy::Interest => "interest",
            stream::RetentionPolicy::WorkQueue => "workqueue",
            stream::RetentionPolicy::Limits => "limits",
        };
        return Err(StreamError::Retention {
            name: config.name.clone(),
            found: policy.to_owned(),
        });
    }
    let differences = config.differences(found);
    if differences.is_empty() {
        return Ok(Ensured::Checked {
            info: Box::new(info),
            differences,
            updated: false,
        });
    }
    let list = differences
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if !config.update {
        tracing::warn!(stream = %config.name,
            "the JetStream stream {} differs from the configuration, left as it is: {list}",
            config.name);
        return Ok(Ensured::Checked {
            info: Box::new(info),
            differences,
            updated: false,
        });
    }
    let mut updated = found.clone();
    updated.max_age = config.max_age;
    updated.max_bytes = config.max_bytes_jetstream();
    updated.num_replicas = config.replicas;
    updated.duplicate_window = config.duplicate_window;
    let info = context
        .update_stream(&updated)
        .await
        .map_err(|e| StreamError::Request {
            name: config.name.clone(),
            what: "updating",
            source: e.into(),
        })?;
    tracing::info!(stream = %config.name, "JetStream stream {} updated: {list}", config.name);
    Ok(Ensured::Checked {
        info: Box::new(info),
        differences,
        updated: true,
    })
}
