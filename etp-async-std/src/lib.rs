//! etp on async-std (async-tungstenite): server and client.
//!
//! **Not implemented yet.** This crate is an empty placeholder in the workspace; it
//! exports nothing. Until it lands, embed `etp-proto`'s `Session` in your own event loop.
