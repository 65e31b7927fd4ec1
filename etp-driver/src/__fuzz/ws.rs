//! An in-memory WebSocket that behaves like tokio-tungstenite's where the driver can
//! tell (pings and closes answered automatically, nothing sent after a close, writes
//! blocked while the peer does not read), and a gate for handlers to wait on.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use futures_util::{Sink, Stream};
use tungstenite::Message;
use tungstenite::error::{Error as WsError, ProtocolError as WsProtocolError};
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;

use super::lock;

#[derive(Default)]
struct State {
    inbound: VecDeque<Result<Message, WsError>>,
    inbound_ended: bool,
    read_waker: Option<Waker>,
    /// Sent by the driver, waiting for room in `outbound` (tungstenite's buffer).
    unflushed: VecDeque<Message>,
    /// What the peer can read.
    outbound: VecDeque<Message>,
    /// How many messages `outbound` may hold before writes block.
    capacity: usize,
    write_waker: Option<Waker>,
    /// Pong and close echoes tungstenite sends by itself.
    automatic: VecDeque<Message>,
    close_sent: bool,
    close_received: bool,
}

impl State {
    fn wake_writer(&mut self) {
        if let Some(waker) = self.write_waker.take() {
            waker.wake();
        }
    }

    fn wake_reader(&mut self) {
        if let Some(waker) = self.read_waker.take() {
            waker.wake();
        }
    }

    /// Moves automatic answers and buffered writes out, as far as the capacity
    /// allows; true when nothing is left buffered.
    fn flush(&mut self) -> bool {
        self.outbound.extend(self.automatic.drain(..));
        while self.outbound.len() < self.capacity {
            let Some(message) = self.unflushed.pop_front() else {
                break;
            };
            self.outbound.push_back(message);
        }
        self.unflushed.is_empty()
    }
}

/// The driver's end.
pub(super) struct FakeWs {
    state: Arc<Mutex<State>>,
}

/// The program's end.
pub(super) struct Peer {
    state: Arc<Mutex<State>>,
}

pub(super) fn pair() -> (FakeWs, Peer) {
    let state = Arc::new(Mutex::new(State {
        capacity: usize::MAX,
        ..State::default()
    }));
    (
        FakeWs {
            state: state.clone(),
        },
        Peer { state },
    )
}

impl Stream for FakeWs {
    type Item = Result<Message, WsError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut state = lock(&self.state);
        state.flush();
        let Some(item) = state.inbound.pop_front() else {
            if state.inbound_ended {
                return Poll::Ready(None);
            }
            state.read_waker = Some(cx.waker().clone());
            return Poll::Pending;
        };
        match &item {
            Ok(Message::Close(frame)) => {
                if !state.close_sent && !state.close_received {
                    state.automatic.push_back(Message::Close(frame.clone()));
                }
                state.close_received = true;
            }
            Ok(Message::Ping(data)) if !state.close_sent && !state.close_received => {
                state.automatic.push_back(Message::Pong(data.clone()));
            }
            _ => {}
        }
        Poll::Ready(Some(item))
    }
}

impl Sink<Message> for FakeWs {
    type Error = WsError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        let mut state = lock(&self.state);
        state.flush();
        if state.unflushed.is_empty() {
            return Poll::Ready(Ok(()));
        }
        state.write_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    fn start_send(self: Pin<&mut Self>, message: Message) -> Result<(), WsError> {
        // What the peer reads, as tungstenite would write it: a text frame whose
        // bytes are not UTF-8 stays a `Message::Frame`, which the checks reject.
        let message = crate::as_received(message);
        let mut state = lock(&self.state);
        if state.close_sent || state.close_received {
            return Err(WsError::Protocol(WsProtocolError::SendAfterClosing));
        }
        if matches!(message, Message::Close(_)) {
            state.close_sent = true;
        }
        state.unflushed.push_back(message);
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        let mut state = lock(&self.state);
        if state.flush() {
            Poll::Ready(Ok(()))
        } else {
            state.write_waker = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        self.poll_flush(cx)
    }
}

impl Peer {
    fn push(&self, item: Result<Message, WsError>) {
        let mut state = lock(&self.state);
        if state.inbound_ended {
            return; // the stream is over; later input goes nowhere
        }
        state.inbound.push_back(item);
        state.wake_reader();
    }

    pub(super) fn send(&self, message: Message) {
        self.push(Ok(message));
    }

    pub(super) fn send_error(&self, error: WsError) {
        self.push(Err(error));
    }

    /// A close frame, then the end of the stream (tungstenite ends it after the echo).
    pub(super) fn close_with(&self, code: Option<u16>) {
        let frame = code.map(|code| CloseFrame {
            code: CloseCode::from(code),
            reason: "".into(),
        });
        self.send(Message::Close(frame));
        self.end_stream();
    }

    /// The driver's stream ends after what was sent.
    pub(super) fn end_stream(&self) {
        let mut state = lock(&self.state);
        state.inbound_ended = true;
        state.wake_reader();
    }

    /// The peer reads: everything it can see now leaves the socket. With `capacity`
    /// 0 it reads nothing more until the capacity is raised.
    pub(super) fn set_capacity(&self, capacity: usize) {
        let mut state = lock(&self.state);
        state.capacity = capacity;
        state.wake_writer();
    }

    /// What the peer reads now (as much as the capacity let through); making room
    /// wakes a blocked writer.
    pub(super) fn take_outbound(&self) -> Vec<Message> {
        let mut state = lock(&self.state);
        let taken: Vec<Message> = state.outbound.drain(..).collect();
        if !taken.is_empty() {
            state.wake_writer();
        }
        taken
    }
}

/// A gate handlers wait on until the program opens it (for good).
#[derive(Clone, Default)]
pub(super) struct Gate {
    inner: Arc<Mutex<(bool, Vec<Waker>)>>,
}

impl Gate {
    pub(super) fn open(&self) {
        let wakers = {
            let mut inner = lock(&self.inner);
            inner.0 = true;
            std::mem::take(&mut inner.1)
        };
        wakers.into_iter().for_each(Waker::wake);
    }

    pub(super) fn wait(&self) -> impl std::future::Future<Output = ()> + Send + 'static + use<> {
        let inner = self.inner.clone();
        std::future::poll_fn(move |cx| {
            let mut inner = lock(&inner);
            if inner.0 {
                Poll::Ready(())
            } else {
                inner.1.push(cx.waker().clone());
                Poll::Pending
            }
        })
    }
}
