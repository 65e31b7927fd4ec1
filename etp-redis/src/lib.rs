//! Scale-out for etp: several etp servers behind a load balancer act as one through
//! Redis pub/sub. Room broadcasts reach the members on every node, an emit (or an
//! emit with ack) to a connection id goes to the node that owns it, a connection on
//! another node can be put in a room, and "how many are in this room" counts every
//! node.
//!
//! ```no_run
//! use etp_redis::{ClusterConfig, RedisBroker, RedisConfig};
//! use etp_tokio::{Server, ServerExt};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let broker = RedisBroker::connect(RedisConfig::new("redis://127.0.0.1:6379/")).await?;
//! let server = Server::builder()
//!     .on_connect(|conn| async move { conn.join("lobby"); })
//!     .cluster(broker, ClusterConfig::default())
//!     .build()?;
//! tokio::spawn({
//!     let server = server.clone();
//!     async move { server.listen("0.0.0.0:8080").await }
//! });
//! // Reaches the lobby's members on every node.
//! server.rooms().broadcast(["lobby"], "news", b"hello everyone", None)?;
//! // Counts them on every node; `missing` names the nodes that did not answer.
//! let size = server.cluster().room_len("lobby").await?;
//! println!("{} in the lobby ({} nodes silent)", size.value, size.missing.len());
//! # Ok(())
//! # }
//! ```
//!
//! How the nodes cooperate (membership by heartbeat, connection ids that name their
//! node, encode-once envelopes, at-most-once broadcasts, partial answers on timeout)
//! is described in [`etp_driver::cluster`]; this crate only carries the messages:
//! [`RedisBroker`] implements [`Broker`] with a maintained Redis client (redis-rs on
//! tokio).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod broker;
mod config;

pub use broker::{ConnectError, RedisBroker, RedisStats};
pub use config::RedisConfig;
pub use etp_driver::cluster::{
    Broker, BrokerError, Cluster, ClusterConfig, ClusterConfigError, ClusterError, ClusterStats,
    Gathered, NodeId,
};
