//! Typed events (feature `json`): [`Json<T>`] as a handler's input and reply,
//! [`Conn::emit_json`], [`Conn::emit_with_ack_json`] and their client and broadcast
//! forms, with serde and serde_json.
//!
//! Raw bytes stay the default and cost nothing extra; JSON is opt-in per handler and
//! per call. Data a peer sent that is not JSON of the expected type is an error for the
//! application to hear about, never a panic: a handler's input goes to the error hook
//! as [`Error::Decode`] (and the peer's request gets an empty acknowledgement), a reply
//! to [`Conn::emit_with_ack_json`] comes back as [`JsonError::Decode`].
//!
//! Empty data (`name||id` or `name||id||`) decodes as JSON `null`, so `Json<()>` and
//! `Json<Option<T>>` accept events that carry nothing.

use std::any::type_name;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::conn::Conn;
use crate::error::{AckError, EmitError, Error};
use crate::handler::{Call, Event, Handler, IntoAck};
use crate::hub::{BroadcastReport, Rooms};
use crate::id::ConnId;
use crate::runtime::Runtime;

/// A value carried as JSON: a handler's input (`Fn(Conn, Json<T>)`, decoded before the
/// handler runs) or its reply (`-> Json<R>`, encoded as the acknowledgement's data).
///
/// ```
/// use etp_driver::{Conn, Handler, Json};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Deserialize)]
/// struct Add { a: i64, b: i64 }
/// #[derive(Serialize)]
/// struct Sum { sum: i64 }
///
/// async fn add(_conn: Conn, Json(add): Json<Add>) -> Json<Sum> {
///     Json(Sum { sum: add.a + add.b })
/// }
/// // The immediate form (see `Handler`): no future, the connection borrowed.
/// fn sub(_conn: &Conn, Json(sub): Json<Add>) -> Json<Sum> {
///     Json(Sum { sum: sub.a - sub.b })
/// }
/// fn assert_handler<A>(_: impl Handler<A>) {}
/// assert_handler(add);
/// assert_handler(sub);
/// ```
///
/// Encoding a reply fails only for values JSON cannot represent (a map with non-string
/// keys, a `Serialize` implementation that returns an error): a bug in the
/// application, not something a peer can cause. The handler then counts as panicked:
/// the error hook hears [`Error::HandlerPanicked`] with serde's message, the request
/// gets an empty acknowledgement, the connection stays open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoAck for Json<T> {
    fn into_ack(self) -> Bytes {
        match serde_json::to_vec(&self.0) {
            Ok(json) => Bytes::from(json),
            // Contained by the driver and reported with the event's name; see above.
            Err(err) => panic!(
                "cannot encode the reply as JSON ({}): {err}",
                type_name::<T>()
            ),
        }
    }
}

impl<F, Fut, T> Handler<(Conn, Json<T>)> for F
where
    F: Fn(Conn, Json<T>) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: IntoAck,
    T: DeserializeOwned + 'static,
{
    fn call(&self, conn: &Conn, event: Event) -> Call {
        match decode_event::<T>(conn, &event) {
            Some(value) => Call::of_future(self(conn.clone(), Json(value))),
            None => Call::Done(Bytes::new()),
        }
    }
}

impl<F, R, T> Handler<fn(&Conn, Json<T>)> for F
where
    F: Fn(&Conn, Json<T>) -> R + Send + Sync + 'static,
    R: IntoAck,
    T: DeserializeOwned + 'static,
{
    fn call(&self, conn: &Conn, event: Event) -> Call {
        match decode_event::<T>(conn, &event) {
            Some(value) => Call::Done(self(conn, Json(value)).into_ack()),
            None => Call::Done(Bytes::new()),
        }
    }
}

/// An event's data decoded for a typed handler; a failure goes to the error hook, and
/// the driver answers a request with empty data.
fn decode_event<T: DeserializeOwned>(conn: &Conn, event: &Event) -> Option<T> {
    match decode::<T>(event.data()) {
        Ok(value) => Some(value),
        Err(source) => {
            conn.report(Error::Decode(DecodeError {
                event: event.name().into_owned(),
                type_name: type_name::<T>(),
                reply: false,
                source,
            }));
            None
        }
    }
}

/// Empty data reads as `null` (see the module documentation).
fn decode<T: DeserializeOwned>(data: &[u8]) -> Result<T, serde_json::Error> {
    let data = if data.is_empty() { b"null" } else { data };
    serde_json::from_slice(data)
}

fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Bytes, JsonError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|source| JsonError::Encode {
            type_name: type_name::<T>(),
            source,
        })
}

/// Data that is not JSON of the expected type: an event's data for a typed handler,
/// or the reply to [`Conn::emit_with_ack_json`].
#[derive(Debug)]
pub struct DecodeError {
    event: String,
    type_name: &'static str,
    reply: bool,
    source: serde_json::Error,
}

impl DecodeError {
    /// The event name (for a reply, the event that was asked).
    pub fn event(&self) -> &str {
        &self.event
    }

    /// The Rust type the data should have been.
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }

    /// True when the data was an acknowledgement's reply, false for an event's data.
    pub fn is_reply(&self) -> bool {
        self.reply
    }

    /// serde_json's error: what was wrong, with line and column.
    pub fn json_error(&self) -> &serde_json::Error {
        &self.source
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.reply {
            "the reply to event"
        } else {
            "the data of event"
        };
        write!(
            f,
            "cannot decode {what} {:?} as JSON for {}: {}",
            self.event, self.type_name, self.source
        )
    }
}

impl std::error::Error for DecodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// A typed emit failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum JsonError {
    /// The value could not be encoded as JSON; nothing was sent.
    Encode {
        /// The Rust type of the value.
        type_name: &'static str,
        /// serde_json's error.
        source: serde_json::Error,
    },
    /// The event could not be queued; nothing was sent.
    Emit(EmitError),
    /// No acknowledgement arrived (timed out, or the connection ended first).
    Ack(AckError),
    /// The acknowledgement arrived but its data is not JSON of the expected type.
    Decode(DecodeError),
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Encode { type_name, source } => {
                write!(f, "cannot encode {type_name} as JSON: {source}")
            }
            Self::Emit(err) => fmt::Display::fmt(err, f),
            Self::Ack(err) => fmt::Display::fmt(err, f),
            Self::Decode(err) => fmt::Display::fmt(err, f),
        }
    }
}

impl std::error::Error for JsonError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Encode { source, .. } => Some(source),
            Self::Emit(err) => Some(err),
            Self::Ack(err) => Some(err),
            Self::Decode(err) => Some(err),
        }
    }
}

impl From<EmitError> for JsonError {
    fn from(err: EmitError) -> Self {
        Self::Emit(err)
    }
}

impl From<AckError> for JsonError {
    fn from(err: AckError) -> Self {
        match err {
            AckError::Emit(err) => Self::Emit(err),
            err => Self::Ack(err),
        }
    }
}

fn decode_reply<Resp: DeserializeOwned>(event: &str, data: &[u8]) -> Result<Resp, JsonError> {
    decode(data).map_err(|source| {
        JsonError::Decode(DecodeError {
            event: event.to_owned(),
            type_name: type_name::<Resp>(),
            reply: true,
            source,
        })
    })
}

impl Conn {
    /// Emits `value` as JSON without asking for an acknowledgement.
    pub fn emit_json<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<(), JsonError> {
        Ok(self.emit(name, encode(value)?)?)
    }

    /// Emits `request` as JSON and decodes the acknowledgement's data as `Resp`
    /// (default ack deadline). Empty reply data decodes as `null`: a peer that could
    /// not handle the request answers that way, so expect `Option<_>` if it may.
    ///
    /// ```
    /// # async fn demo(conn: etp_driver::Conn) -> Result<(), etp_driver::JsonError> {
    /// #[derive(serde::Serialize)]
    /// struct Add { a: i64, b: i64 }
    /// #[derive(serde::Deserialize)]
    /// struct Sum { sum: i64 }
    ///
    /// let sum = conn.emit_with_ack_json::<_, Sum>("add", &Add { a: 2, b: 3 }).await?;
    /// assert_eq!(sum.sum, 5);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn emit_with_ack_json<Req, Resp>(
        &self,
        name: &str,
        request: &Req,
    ) -> Result<Resp, JsonError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let reply = self.emit_with_ack(name, encode(request)?).await?;
        decode_reply(name, &reply)
    }

    /// [`emit_with_ack_json`](Self::emit_with_ack_json) with its own deadline.
    pub async fn emit_with_ack_json_timeout<Req, Resp>(
        &self,
        name: &str,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, JsonError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let data = encode(request)?;
        let reply = self.emit_with_ack_timeout(name, data, timeout).await?;
        decode_reply(name, &reply)
    }
}

impl<R: Runtime> crate::Client<R> {
    /// [`Conn::emit_json`] on the current connection.
    pub fn emit_json<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<(), JsonError> {
        self.conn().ok_or(EmitError::Closed)?.emit_json(name, value)
    }

    /// [`Conn::emit_with_ack_json`] on the current connection.
    pub async fn emit_with_ack_json<Req, Resp>(
        &self,
        name: &str,
        request: &Req,
    ) -> Result<Resp, JsonError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let conn = self.conn().ok_or(EmitError::Closed)?;
        conn.emit_with_ack_json(name, request).await
    }
}

impl Rooms {
    /// [`broadcast`](Self::broadcast) with `value` encoded as JSON once.
    pub fn broadcast_json<'a, T: Serialize + ?Sized>(
        &self,
        rooms: impl IntoIterator<Item = &'a str>,
        event: &str,
        value: &T,
        except: Option<ConnId>,
    ) -> Result<BroadcastReport, JsonError> {
        Ok(self.broadcast(rooms, event, &encode(value)?, except)?)
    }
}
