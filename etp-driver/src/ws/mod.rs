//! The server's WebSocket framing (RFC 6455) on the data path, after the upgrade.
//!
//! The adapters serve connections over [`WsStream`] rather than tungstenite's stream:
//! it reads frames into one buffer without zeroing it first, hands messages out as
//! views of that buffer, and writes a frame with one copy. tungstenite still answers
//! the upgrade, runs the client, and names the messages ([`tungstenite::Message`]).

mod decoder;
mod frame;
mod stream;
mod transport;

#[cfg(test)]
mod tests;

pub use stream::WsStream;
pub use transport::{FuturesIo, Transport};
