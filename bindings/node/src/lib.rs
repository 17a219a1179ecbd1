//! Node.js binding of [`shmstate`]: a napi-rs addon over the Rust core.
//!
//! | file | what it does |
//! |---|---|
//! | `raw.rs` | raw Node-API helpers for the per-request calls (argument checks, errors, values) |
//! | `hot.rs` | `get`, `set`, `incr`, counters, gauges, rate-limit checks as raw functions |
//! | `store.rs` | napi-rs classes: opening, whole-store operations, stats, locks, workers |
//! | `cache.rs` | the stampede guard split into steps, so `compute` can be an async JS function |
//! | `config.rs` | store options to a core `Config` |
//! | `error.rs` | every core error as a JS error with a stable `code` |
//!
//! The JS API (`index.js`) validates arguments of the cold calls before they get here; the
//! per-request calls validate their own.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod cache;
mod config;
mod error;
mod hot;
mod raw;
mod store;

/// The error codes, as `[code, class]` pairs, so `index.js` and the tests can check that
/// every core error has one.
#[napi_derive::napi]
pub fn error_codes() -> Vec<Vec<String>> {
    use shmstate::{Error, Incompatibility};
    let samples = [
        Error::KeyTooLong { len: 0, max: 0 },
        Error::ValueTooLarge { len: 0, max: 0 },
        Error::Full,
        Error::NotAnInteger,
        Error::Overflow,
        Error::InvalidTtl { reason: "" },
        Error::InvalidCounterName { reason: "" },
        Error::TooManyCounters { max: 0 },
        Error::InvalidConfig {
            field: "",
            reason: "",
        },
        Error::InvalidName {
            name: String::new(),
            reason: "",
        },
        Error::Incompatible {
            reason: Incompatibility::BadMagic,
        },
        Error::Corrupted { what: "" },
        Error::Insecure {
            path: Default::default(),
            reason: "",
        },
        Error::AlreadyExists {
            path: Default::default(),
        },
        Error::NotFound {
            path: Default::default(),
        },
        Error::NotInitialized {
            path: Default::default(),
            reason: "",
        },
        Error::LockTimeout { waited_ms: 0 },
        Error::Io {
            op: "",
            source: std::io::Error::other(""),
        },
        Error::BadRecord { what: "" },
        Error::InvalidArgument {
            what: "",
            reason: "",
        },
        Error::Contended { attempts: 0 },
        Error::RegistryFull { max: 0 },
        Error::NotOwner { owner: 0 },
    ];
    samples
        .iter()
        .map(|e| {
            let (class, code) = error::classify(e);
            vec![code.to_string(), format!("{class:?}")]
        })
        .collect()
}
