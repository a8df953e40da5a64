//! The group-commit thread of one `RedbCache`: it waits until the oldest pending write is
//! `commit_interval` old, then commits everything pending in one transaction. The thread is
//! started by the first write that needs it (`start_once`): a process that only reads starts
//! none.
//!
//! The thread knows nothing of the store: it runs a closure the store gives it, which holds
//! only a `Weak` reference to its cache, so an unused cache is dropped (and flushes in its
//! `Drop`) without waiting for the thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What one background commit came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tick {
    /// Committed, or nothing was waiting.
    Done,
    /// The commit failed: the writes stay pending; try again after another interval.
    Failed,
    /// The cache is gone: stop.
    Gone,
}

/// The commit the thread runs when the oldest pending write is due.
pub(crate) type CommitPending = Box<dyn Fn() -> Tick + Send>;

/// What the cache tells its committer.
#[derive(Debug, Default)]
struct Signal {
    /// When the oldest uncommitted write was made; `None` when nothing waits.
    work_since: Option<Instant>,
    /// The cache is closing: stop.
    shutdown: bool,
}

/// The state shared by a cache and its commit thread.
#[derive(Debug, Default)]
pub(crate) struct Committer {
    signal: Mutex<Signal>,
    wake: Condvar,
    /// The thread, taken by the first [`Committer::shut_down`] that joins it.
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Set once the thread has been started (or the committer shut down before it was).
    started: AtomicBool,
}

impl Committer {
    fn signal(&self) -> MutexGuard<'_, Signal> {
        // Signal updates are single field writes: a panic cannot leave them torn.
        self.signal.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the thread has been started.
    pub(crate) fn is_started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }

    /// Starts the thread that runs `commit` once the oldest pending write is `interval` old,
    /// unless it runs already or the committer was shut down. `commit` is made only then.
    pub(crate) fn start_once(
        self: &Arc<Self>,
        commit: impl FnOnce() -> CommitPending,
        interval: Duration,
        name: impl FnOnce() -> String,
    ) -> std::io::Result<()> {
        if self.is_started() {
            return Ok(());
        }
        let mut thread = self.thread.lock().unwrap_or_else(PoisonError::into_inner);
        if self.is_started() || self.signal().shutdown {
            return Ok(());
        }
        let committer = Arc::clone(self);
        let commit = commit();
        *thread = Some(
            std::thread::Builder::new()
                .name(name())
                .spawn(move || committer.run(&commit, interval))?,
        );
        self.started.store(true, Ordering::Release);
        Ok(())
    }

    /// Notes that a write is waiting; wakes the thread if it was idle.
    pub(crate) fn work_arrived(&self) {
        let mut signal = self.signal();
        if signal.work_since.is_none() {
            signal.work_since = Some(Instant::now());
            self.wake.notify_one();
        }
    }

    /// Stops the thread and waits until it has ended, so that it holds nothing of the cache
    /// (the database handle above all) when this returns. Called on the thread itself (the
    /// cache dropped by its commit thread), it only asks it to stop: the thread ends as soon
    /// as the drop returns.
    pub(crate) fn shut_down(&self) {
        self.signal().shutdown = true;
        self.wake.notify_one();
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            if thread.thread().id() == std::thread::current().id() {
                return;
            }
            // The thread's body catches panics of the commits it runs (`catching_panics`), and
            // a panic anywhere else has nothing left to clean up: ignore how it ended.
            let _ = thread.join();
        }
    }

    fn run(&self, commit: &CommitPending, interval: Duration) {
        loop {
            {
                let mut signal = self.signal();
                loop {
                    if signal.shutdown {
                        return;
                    }
                    match signal.work_since {
                        None => {
                            signal = self
                                .wake
                                .wait(signal)
                                .unwrap_or_else(PoisonError::into_inner)
                        }
                        Some(since) => {
                            let due = since + interval;
                            let now = Instant::now();
                            if now >= due {
                                break;
                            }
                            signal = self
                                .wake
                                .wait_timeout(signal, due - now)
                                .unwrap_or_else(PoisonError::into_inner)
                                .0;
                        }
                    }
                }
                // Writes arriving from here on find the pending set non-empty or start a new
                // window; either way none is left without a commit scheduled.
                signal.work_since = None;
            }
            match commit() {
                Tick::Done => {}
                // The writes stay pending; try again after another interval.
                Tick::Failed => self.work_arrived(),
                Tick::Gone => return,
            }
        }
    }
}
