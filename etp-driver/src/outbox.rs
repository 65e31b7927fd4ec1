//! A connection's outbound command queue: many senders (its handles, broadcasts), one
//! driver.
//!
//! A mutex around a ring buffer rather than a linked channel: a broadcast to many
//! members pushes one command on each, and a node allocated and freed per push (as
//! `futures_channel::mpsc` does) cost about as much as the rest of the delivery. The
//! driver takes everything queued under one lock, and a sender wakes the driver only
//! when the queue goes from empty to non-empty: whoever queued the first command of a
//! batch has already woken it for the rest.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::Context;

use futures_util::task::AtomicWaker;

use crate::conn::Command;

/// Above this many slots an empty batch buffer is let go rather than kept for the next
/// burst: a connection that once queued a large burst does not hold its memory. A
/// command is about 100 bytes, so the two buffers keep at most about 3 KiB.
const KEEP_CAPACITY: usize = 16;

#[derive(Default)]
pub(crate) struct Outbox {
    state: Mutex<State>,
    waker: AtomicWaker,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Command>,
    closed: bool,
}

impl Outbox {
    /// Queues a command; gives it back once the driver has closed the queue.
    pub(crate) fn push(&self, command: Command) -> Result<(), Command> {
        let was_empty = {
            let mut state = self.lock();
            if state.closed {
                return Err(command);
            }
            state.queue.push_back(command);
            state.queue.len() == 1
        };
        if was_empty {
            self.waker.wake();
        }
        Ok(())
    }

    /// Makes the next push into an empty queue wake this task. Register before
    /// looking, so that a command queued after the look is not missed.
    pub(crate) fn register(&self, cx: &mut Context<'_>) {
        self.waker.register(cx.waker());
    }

    /// Moves everything queued to the back of `batch`: whether anything was there.
    pub(crate) fn take(&self, batch: &mut VecDeque<Command>) -> bool {
        let mut state = self.lock();
        if state.queue.is_empty() {
            return false;
        }
        if batch.is_empty() {
            // The driver's empty buffer becomes the queue: no copy, no allocation.
            if batch.capacity() > KEEP_CAPACITY {
                *batch = VecDeque::new();
            }
            std::mem::swap(&mut state.queue, batch);
        } else {
            batch.extend(state.queue.drain(..));
        }
        true
    }

    /// Refuses every later command and moves what is queued to the back of `batch`.
    pub(crate) fn close(&self, batch: &mut VecDeque<Command>) {
        let mut state = self.lock();
        state.closed = true;
        batch.extend(state.queue.drain(..));
        state.queue = VecDeque::new();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while the lock is held but an allocation failure, which
        // leaves the queue consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Wake, Waker};

    use bytes::Bytes;

    use super::*;

    fn command(n: usize) -> Command {
        Command::Emit {
            name: Bytes::from_static(b"n"),
            data: Bytes::from(n.to_string()),
            cost: 1,
        }
    }

    fn number(command: &Command) -> usize {
        match command {
            Command::Emit { data, .. } => std::str::from_utf8(data).unwrap().parse().unwrap(),
            _ => unreachable!("only emits are queued here"),
        }
    }

    #[derive(Default)]
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn commands_come_out_in_order_across_batches_and_wake_once_per_batch() {
        let outbox = Outbox::default();
        let counter = Arc::new(CountingWaker::default());
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let mut batch = VecDeque::new();
        outbox.register(&mut cx);
        assert!(!outbox.take(&mut batch));

        for n in 0..3 {
            outbox.push(command(n)).unwrap_or_else(|_| panic!("open"));
        }
        assert_eq!(
            counter.0.load(Ordering::SeqCst),
            1,
            "only the first push wakes"
        );
        outbox.register(&mut cx);
        assert!(outbox.take(&mut batch));
        // Older commands still in the driver's batch stay ahead of newer ones.
        outbox.push(command(3)).unwrap_or_else(|_| panic!("open"));
        assert_eq!(counter.0.load(Ordering::SeqCst), 2);
        assert!(outbox.take(&mut batch));
        assert_eq!(batch.iter().map(number).collect::<Vec<_>>(), [0, 1, 2, 3]);
        assert!(!outbox.take(&mut batch));
    }

    #[test]
    fn a_closed_outbox_gives_commands_back_and_hands_over_what_was_queued() {
        let outbox = Outbox::default();
        outbox.push(command(7)).unwrap_or_else(|_| panic!("open"));
        let mut batch = VecDeque::new();
        outbox.close(&mut batch);
        assert_eq!(batch.iter().map(number).collect::<Vec<_>>(), [7]);
        let refused = outbox.push(command(8)).expect_err("closed");
        assert_eq!(number(&refused), 8);
    }

    /// The bound on kept memory in `KEEP_CAPACITY`'s comment.
    #[test]
    fn a_command_is_about_a_hundred_bytes() {
        assert!(
            std::mem::size_of::<Command>() <= 128,
            "{}",
            std::mem::size_of::<Command>()
        );
    }

    #[test]
    fn a_large_empty_batch_buffer_is_not_kept() {
        let outbox = Outbox::default();
        let mut batch = VecDeque::with_capacity(KEEP_CAPACITY * 4);
        outbox.push(command(1)).unwrap_or_else(|_| panic!("open"));
        assert!(outbox.take(&mut batch));
        assert!(batch.capacity() <= KEEP_CAPACITY, "{}", batch.capacity());
        assert!(outbox.lock().queue.capacity() <= KEEP_CAPACITY);
    }
}
