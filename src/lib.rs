#![doc = include_str!("../README.md")]
//!
//! ## This crate
//!
//! Today the `etp` facade re-exports the sans-IO core as [`proto`] (`etp-proto`): the
//! frame codec, the per-connection [`proto::Session`] state machine and the
//! [`proto::Rooms`] registry. The runtime adapters chosen by the `tokio` (default) and
//! `async-std` features are placeholders that export nothing yet.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub use etp_proto as proto;
