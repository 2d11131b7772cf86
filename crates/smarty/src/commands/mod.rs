//! The commands that are not the service: `read`, `demo`, `export`, `import`, `config` and
//! `store`
//! (`simulate` is [`crate::simulate`], `run` is [`crate::service`]).

pub mod config;
pub mod demo;
pub mod export;
pub mod fleet;
pub mod import;
pub mod read;
pub mod store;
