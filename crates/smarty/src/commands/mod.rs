//! The commands that are not the service: `read`, `demo`, `export`, `import`, `config`,
//! `store`, `fleet`, `completions` and `manpage`
//! (`simulate` is [`crate::simulate`], `run` is [`crate::service`]).

pub mod config;
pub mod demo;
pub mod docs;
pub mod export;
pub mod fleet;
pub mod import;
pub mod read;
pub mod store;
