//! etp: the event transport protocol over WebSocket, wire-compatible with Go's
//! `txix-open/etp` and its JavaScript client.
//!
//! Today this facade re-exports the sans-IO core, [`proto`] (`etp-proto`): the frame
//! codec, the per-connection [`proto::Session`] state machine and the [`proto::Rooms`]
//! registry. The runtime adapters chosen by the `tokio` (default) and `async-std`
//! features are placeholders that export nothing yet.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub use etp_proto as proto;
