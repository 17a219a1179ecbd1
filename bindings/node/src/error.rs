//! Every core [`shmstate::Error`] as a JS error with a stable `code`.
//!
//! The table here is the contract published in `index.d.ts` (`ErrorCode`) and the README.
//! Errors that say an argument was out of range for this store (too long a key, a zero TTL, a
//! bad name or configuration) are `RangeError`s; the others are plain `Error`s.

use shmstate::Error;

use crate::raw::{self, Class, Env, Thrown};

/// The JS class and `code` of a core error.
pub(crate) fn classify(e: &Error) -> (Class, &'static str) {
    use Class::{Error as E, RangeError as Range};
    match e {
        Error::KeyTooLong { .. } => (Range, "SHMSTATE_KEY_TOO_LONG"),
        Error::ValueTooLarge { .. } => (Range, "SHMSTATE_VALUE_TOO_LARGE"),
        Error::Full => (E, "SHMSTATE_FULL"),
        Error::NotAnInteger => (E, "SHMSTATE_NOT_AN_INTEGER"),
        Error::Overflow => (Range, "SHMSTATE_OVERFLOW"),
        Error::InvalidTtl { .. } => (Range, "SHMSTATE_INVALID_TTL"),
        Error::InvalidCounterName { .. } => (Range, "SHMSTATE_INVALID_COUNTER_NAME"),
        Error::TooManyCounters { .. } => (E, "SHMSTATE_TOO_MANY_COUNTERS"),
        Error::InvalidConfig { .. } => (Range, "SHMSTATE_INVALID_CONFIG"),
        Error::InvalidName { .. } => (Range, "SHMSTATE_INVALID_NAME"),
        Error::Incompatible { .. } => (E, "SHMSTATE_INCOMPATIBLE"),
        Error::Corrupted { .. } => (E, "SHMSTATE_CORRUPTED"),
        Error::Insecure { .. } => (E, "SHMSTATE_INSECURE"),
        Error::AlreadyExists { .. } => (E, "SHMSTATE_ALREADY_EXISTS"),
        Error::NotFound { .. } => (E, "SHMSTATE_NOT_FOUND"),
        Error::NotInitialized { .. } => (E, "SHMSTATE_NOT_INITIALIZED"),
        Error::LockTimeout { .. } => (E, "SHMSTATE_LOCK_TIMEOUT"),
        Error::Io { .. } => (E, "SHMSTATE_IO"),
        Error::BadRecord { .. } => (E, "SHMSTATE_BAD_RECORD"),
        Error::InvalidArgument { .. } => (Range, "SHMSTATE_INVALID_ARGUMENT"),
        Error::Contended { .. } => (E, "SHMSTATE_CONTENDED"),
        Error::RegistryFull { .. } => (E, "SHMSTATE_REGISTRY_FULL"),
        Error::NotOwner { .. } => (E, "SHMSTATE_NOT_OWNER"),
        Error::Backend { .. } => (E, "SHMSTATE_BACKEND"),
        // `Error` is non-exhaustive: a variant added to the core later still gets a code.
        _ => (E, "SHMSTATE_ERROR"),
    }
}

/// Throws `e` as a JS error (raw callbacks).
pub(crate) fn throw(env: Env, e: &Error) -> Thrown {
    let (class, code) = classify(e);
    raw::throw(env, class, code, &e.to_string())
}

/// Throws `e` and returns the napi-rs error that tells napi-rs an exception is pending
/// (napi-rs methods).
pub(crate) fn napi(env: &napi::Env, e: Error) -> napi::Error {
    throw(env.raw(), &e);
    napi::Error::new(napi::Status::PendingException, String::new())
}

/// `Result::map_err` helper for napi-rs methods.
pub(crate) trait OrThrow<T> {
    fn or_throw(self, env: &napi::Env) -> napi::Result<T>;
}

impl<T> OrThrow<T> for shmstate::Result<T> {
    fn or_throw(self, env: &napi::Env) -> napi::Result<T> {
        self.map_err(|e| napi(env, e))
    }
}
