#![doc = include_str!("../README.md")]
//!
//! ## This crate
//!
//! The `etp` facade. The runtime is a Cargo feature, and the API has the same names on
//! both, so switching is a one-line change:
//!
//! * `tokio` (default): everything from `etp-tokio` at the root and under `etp::tokio`.
//! * `async-std` (`default-features = false, features = ["async-std"]`): everything
//!   from `etp-async-std` at the root and under `etp::async_std`. It also runs on smol.
//!
//! Both features may be on at once (another crate in the graph may turn one on): each
//! runtime stays reachable under its own module, and the root follows tokio.
//!
//! The sans-IO core is [`proto`] in every configuration.
//!
//! Other features: `json` (default) for typed events (`Json<T>`, `emit_json`,
//! `emit_with_ack_json`); `tracing` for spans per connection and per handled event;
//! `metrics` for counters and histograms through the `metrics` facade (the names are
//! listed in the `etp-driver` documentation).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// etp on tokio (`etp-tokio`).
#[cfg(feature = "tokio")]
pub mod tokio {
    pub use etp_tokio::*;
}

/// etp on async-std and smol (`etp-async-std`).
#[cfg(feature = "async-std")]
pub mod async_std {
    pub use etp_async_std::*;
}

#[cfg(feature = "tokio")]
pub use etp_tokio::*;

#[cfg(all(feature = "async-std", not(feature = "tokio")))]
pub use etp_async_std::*;

#[cfg(not(any(feature = "tokio", feature = "async-std")))]
pub use etp_proto as proto;
