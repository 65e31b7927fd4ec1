//! etp on tokio (tokio-tungstenite): server, client and axum integration.
//!
//! **Not implemented yet.** This crate is an empty placeholder in the workspace; it
//! exports nothing. Until it lands, embed `etp-proto`'s `Session` in your own event loop.
