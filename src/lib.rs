#![doc = include_str!("../README.md")]
//!
//! ## This crate
//!
//! The `etp` facade. With the default `tokio` feature it re-exports `etp-tokio`: the
//! [`Server`], [`Client`], [`Conn`], [`Rooms`] and friends, plus the
//! [`ServerExt`] / [`ClientExt`] traits that listen and dial. The sans-IO core is
//! [`proto`] either way. The `async-std` adapter is not built yet.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "tokio")]
pub use etp_tokio::*;

#[cfg(not(feature = "tokio"))]
pub use etp_proto as proto;
