//! Runtime-agnostic async driver for etp: the per-connection driver future, the
//! `Runtime` trait, and the server, client, connection and rooms hub built on
//! [`etp-proto`](https://docs.rs/etp-proto).
//!
//! **Not implemented yet.** This crate is an empty placeholder in the workspace; it
//! exports nothing. Until it lands, embed `etp-proto`'s `Session` in your own event loop.
