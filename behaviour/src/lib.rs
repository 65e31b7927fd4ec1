//! One behaviour suite for etp, written once and run on every runtime adapter.
//!
//! A behaviour case is a generic async function over [`TestRuntime`]:
//!
//! ```text
//! async fn an_ack_round_trips<R: TestRuntime>() {
//!     let server = Server::<R>::builder().on("echo", echo).build().unwrap();
//!     let test = TestServer::start(server);
//!     let client = Client::<R>::builder().build().unwrap();
//!     within("dial", client.dial(&test.url("/ws"))).await.unwrap();
//!     // ...
//! }
//!
//! etp_behaviour::behaviour_suite! {
//!     an_ack_round_trips,
//!     // Per-runtime attributes, e.g. a known bug on one runtime:
//!     another_case { async_std: #[ignore = "BUG: ..."]; },
//! }
//! ```
//!
//! [`behaviour_suite!`] turns every case into `tokio::<case>` (on
//! [`TokioRuntime`], a fresh multi-thread tokio runtime per test) and
//! `async_std::<case>` (on [`AsyncStdRuntime`], `async_std::task::block_on`).
//!
//! What the cases share:
//!
//! * [`TestRuntime`]: what differs between the runtimes (run a test, serve a bound
//!   listener, dial), plus sleeping and spawning on the runtime under test.
//! * [`TestServer`], [`Hooks`]: a server on an ephemeral `127.0.0.1` port and
//!   channels that record its hooks.
//! * [`raw`]: peers that check exact bytes (a WebSocket peer, a hand-written frame
//!   codec, raw HTTP). They are blocking, on std sockets, each operation on its own
//!   thread, so that the same peer works under every runtime and never blocks the
//!   runtime under test.
//! * [`within`], [`eventually`], [`Rx::next`]: every wait is bounded by [`GUARD`]
//!   (with a timer of the harness, not of the runtime under test), so that a broken
//!   library fails a test instead of hanging it.

mod runtime;
mod server;
mod wait;

pub mod raw;

pub use runtime::{DialExt, Task, TestRuntime};
pub use server::{Hooks, TestServer, hooked, hooked_client};
pub use wait::{GUARD, Gate, Rx, Tx, blocking, channel, eventually, within, yield_now};

pub use etp_async_std::AsyncStdRuntime;
pub use etp_tokio::TokioRuntime;

/// Generates one `#[test]` per runtime for each generic behaviour case.
///
/// Each entry names an `async fn case<R: TestRuntime>()` in scope; it becomes
/// `tokio::case` and `async_std::case`. An entry may carry attributes for one runtime
/// (or both), in braces, each list ended by `;`:
///
/// ```text
/// behaviour_suite! {
///     plain_case,
///     flaky_on_one { async_std: #[ignore = "BUG: why"]; },
///     slow_everywhere { tokio: #[ignore]; async_std: #[ignore]; },
/// }
/// ```
#[macro_export]
macro_rules! behaviour_suite {
    ($(
        $name:ident $({
            $(tokio: $(#[$tokio:meta])* ;)?
            $(async_std: $(#[$async_std:meta])* ;)?
        })?
    ),* $(,)?) => {
        /// The behaviour suite on tokio.
        mod tokio {
            $(
                #[test]
                $($($(#[$tokio])*)?)?
                fn $name() {
                    <$crate::TokioRuntime as $crate::TestRuntime>::block_on(
                        super::$name::<$crate::TokioRuntime>(),
                    );
                }
            )*
        }

        /// The behaviour suite on async-std.
        mod async_std {
            $(
                #[test]
                $($($(#[$async_std])*)?)?
                fn $name() {
                    <$crate::AsyncStdRuntime as $crate::TestRuntime>::block_on(
                        super::$name::<$crate::AsyncStdRuntime>(),
                    );
                }
            )*
        }
    };
}
