//! A deterministic single-threaded executor and a manual clock: the fuzz checker runs
//! every task to a standstill between two steps of its program, and time only moves
//! when the program says so.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use super::lock;
use crate::Runtime;

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Polls allowed per [`Executor::run_until_stalled`]: a task that keeps waking itself
/// without the program doing anything is a livelock, which this turns into a panic.
const MAX_POLLS: usize = 200_000;

#[derive(Default)]
struct Queues {
    /// Tasks spawned since the last run, not yet given an id.
    spawned: Vec<Task>,
    /// Ids of woken tasks.
    ready: VecDeque<usize>,
}

struct TaskWaker {
    id: usize,
    queues: Arc<Mutex<Queues>>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        lock(&self.queues).ready.push_back(self.id);
    }
}

/// The executor: spawn from anywhere (the runtime's `spawn`), run from the checker.
pub(super) struct Executor {
    queues: Arc<Mutex<Queues>>,
    tasks: Mutex<Vec<Option<(Task, Waker)>>>,
}

/// Whether a tracked task has finished.
pub(super) struct Done(Arc<AtomicBool>);

impl Done {
    pub(super) fn is_done(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

impl Executor {
    pub(super) fn new() -> Self {
        Self {
            queues: Arc::default(),
            tasks: Mutex::default(),
        }
    }

    pub(super) fn spawn(&self, future: impl Future<Output = ()> + Send + 'static) {
        lock(&self.queues).spawned.push(Box::pin(future));
    }

    /// [`spawn`](Self::spawn), with a flag that tells when the task finished.
    pub(super) fn spawn_tracked(&self, future: impl Future<Output = ()> + Send + 'static) -> Done {
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        self.spawn(async move {
            future.await;
            flag.store(true, Ordering::SeqCst);
        });
        Done(done)
    }

    /// Polls woken tasks until none is left to poll.
    pub(super) fn run_until_stalled(&self) {
        let mut tasks = lock(&self.tasks);
        for _ in 0..MAX_POLLS {
            let (spawned, next) = {
                let mut queues = lock(&self.queues);
                (
                    std::mem::take(&mut queues.spawned),
                    queues.ready.pop_front(),
                )
            };
            for task in spawned {
                let id = tasks.len();
                let waker = Waker::from(Arc::new(TaskWaker {
                    id,
                    queues: self.queues.clone(),
                }));
                tasks.push(Some((task, waker)));
                lock(&self.queues).ready.push_back(id);
            }
            let Some(id) = next else {
                if lock(&self.queues).ready.is_empty() {
                    return;
                }
                continue;
            };
            let Some((task, waker)) = tasks[id].as_mut() else {
                continue; // finished; a late wake-up
            };
            let waker = waker.clone();
            if task
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_ready()
            {
                tasks[id] = None;
            }
        }
        panic!("tasks kept waking each other for {MAX_POLLS} polls without progress");
    }

    /// True when every task spawned so far has finished.
    pub(super) fn all_done(&self) -> bool {
        lock(&self.queues).spawned.is_empty() && lock(&self.tasks).iter().all(Option::is_none)
    }
}

struct Clock {
    start: Instant,
    now: Instant,
    next_sleeper: u64,
    sleepers: HashMap<u64, Waker>,
}

/// A [`Runtime`] on the [`Executor`], with a clock that only moves on
/// [`advance`](Self::advance).
#[derive(Clone)]
pub(super) struct FuzzRuntime {
    queues: Arc<Mutex<Queues>>,
    clock: Arc<Mutex<Clock>>,
}

impl FuzzRuntime {
    pub(super) fn new(exec: &Executor) -> Self {
        let now = Instant::now();
        Self {
            queues: exec.queues.clone(),
            clock: Arc::new(Mutex::new(Clock {
                start: now,
                now,
                next_sleeper: 0,
                sleepers: HashMap::new(),
            })),
        }
    }

    /// Moves the clock forward and wakes every sleeper (each checks its deadline).
    pub(super) fn advance(&self, by: Duration) {
        let wakers: Vec<Waker> = {
            let mut clock = lock(&self.clock);
            clock.now += by;
            clock.sleepers.drain().map(|(_, waker)| waker).collect()
        };
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Time since the start, on this clock.
    pub(super) fn elapsed(&self) -> Duration {
        let clock = lock(&self.clock);
        clock.now - clock.start
    }
}

/// The future of [`FuzzRuntime::sleep_until`].
pub(super) struct Sleep {
    clock: Arc<Mutex<Clock>>,
    deadline: Instant,
    key: Option<u64>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let mut clock = lock(&this.clock);
        if clock.now >= this.deadline {
            if let Some(key) = this.key.take() {
                clock.sleepers.remove(&key);
            }
            return Poll::Ready(());
        }
        let key = *this.key.get_or_insert_with(|| {
            clock.next_sleeper += 1;
            clock.next_sleeper
        });
        clock.sleepers.insert(key, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            lock(&self.clock).sleepers.remove(&key);
        }
    }
}

impl Runtime for FuzzRuntime {
    type Sleep = Sleep;

    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        lock(&self.queues).spawned.push(Box::pin(future));
    }

    fn sleep_until(&self, deadline: Instant) -> Sleep {
        Sleep {
            clock: self.clock.clone(),
            deadline,
            key: None,
        }
    }

    fn now(&self) -> Instant {
        lock(&self.clock).now
    }
}
