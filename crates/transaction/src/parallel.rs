//! Parallel phases: a resource's vote or finish handed to another thread, and the small
//! set of reusable threads that runs such work.
//!
//! A resource whose phase work can run on another thread (a database session whose pooled
//! connection can be moved) offers it as a [`PhaseJob`] through
//! [`DataManager::vote_job`](crate::DataManager::vote_job) and
//! [`DataManager::finish_job`](crate::DataManager::finish_job). The coordinator runs the
//! jobs of independent resources at once on the worker threads (and one of them on its own
//! thread), then hands each job's output back to its resource on the transaction's thread
//! ([`complete_vote`](crate::DataManager::complete_vote),
//! [`complete_finish`](crate::DataManager::complete_finish)).
//!
//! The workers are started on demand, one per job that finds no idle worker (at most
//! [`MAX_WORKERS`]; more jobs wait in a queue), are reused by later commits, and end after
//! [`IDLE_TIMEOUT`] without work. No thread is spawned per commit.

use std::any::Any;
use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

/// What a [`PhaseJob`] returns: whatever the resource needs back on the transaction's
/// thread (its connection and the statement's result, say). The coordinator hands it
/// unchanged to the resource's `complete_vote` or `complete_finish`.
pub type PhaseOutput = Box<dyn Any + Send>;

/// A resource's vote or finish, packed to run on another thread.
///
/// # Examples
///
/// ```
/// use transaction::PhaseJob;
///
/// let job = PhaseJob::new(|| 6 * 7);
/// let output = job.run();
/// assert_eq!(output.downcast_ref::<i32>(), Some(&42));
/// ```
pub struct PhaseJob {
    work: Box<dyn FnOnce() -> PhaseOutput + Send>,
}

impl PhaseJob {
    /// Packs `work`; its return value comes back to the resource as a [`PhaseOutput`].
    pub fn new<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Self {
        Self {
            work: Box::new(move || Box::new(work()) as PhaseOutput),
        }
    }

    /// Runs the job on the current thread.
    pub fn run(self) -> PhaseOutput {
        (self.work)()
    }

    /// The same job, run inside `span` on whichever thread runs it.
    pub(crate) fn in_span(self, span: tracing::Span) -> Self {
        let work = self.work;
        Self {
            work: Box::new(move || span.in_scope(work)),
        }
    }
}

impl std::fmt::Debug for PhaseJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PhaseJob").finish_non_exhaustive()
    }
}

/// Whether a [`TransactionManager`](crate::TransactionManager) runs parallel phases unless
/// told otherwise (see
/// [`TransactionManagerBuilder::parallel_phases`](crate::TransactionManagerBuilder::parallel_phases)).
pub const PARALLEL_PHASES_DEFAULT: bool = true;

/// At most this many worker threads run phase jobs at once; more jobs wait for one.
pub const MAX_WORKERS: usize = 64;

/// A worker thread with no job for this long ends (a later job starts another).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

type Task = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct PoolState {
    queue: VecDeque<Task>,
    /// Workers waiting for a job.
    idle: usize,
    /// Workers alive.
    threads: usize,
}

struct Pool {
    state: Mutex<PoolState>,
    work: Condvar,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        state: Mutex::new(PoolState::default()),
        work: Condvar::new(),
    })
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A task never panics while holding a lock (tasks catch their panics), so a poisoned
    // lock still holds consistent state.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How many worker threads are alive now.
///
/// # Examples
///
/// ```
/// assert!(transaction::phase_workers() <= transaction::MAX_WORKERS);
/// ```
pub fn phase_workers() -> usize {
    lock(&pool().state).threads
}

impl Pool {
    fn submit(&'static self, task: Task) {
        let mut st = lock(&self.state);
        st.queue.push_back(task);
        // Every queued job needs a waiting worker; start one when there are not enough.
        if st.queue.len() > st.idle && st.threads < MAX_WORKERS {
            let spawned = std::thread::Builder::new()
                .name("transaction-phase".into())
                .spawn(move || self.work_loop());
            match spawned {
                Ok(_) => st.threads += 1,
                // The job waits for a running worker; with none, the caller runs it (see
                // `Batch::wait`).
                Err(e) => tracing::warn!(error = %e, "could not start a phase worker thread"),
            }
        }
        drop(st);
        self.work.notify_one();
    }

    fn work_loop(&self) {
        let mut st = lock(&self.state);
        loop {
            if let Some(task) = st.queue.pop_front() {
                drop(st);
                task();
                st = lock(&self.state);
                continue;
            }
            st.idle += 1;
            let (next, timeout) = self
                .work
                .wait_timeout(st, IDLE_TIMEOUT)
                .unwrap_or_else(PoisonError::into_inner);
            st = next;
            st.idle -= 1;
            if timeout.timed_out() && st.queue.is_empty() {
                st.threads -= 1;
                return;
            }
        }
    }
}

type Outcome = std::thread::Result<PhaseOutput>;

/// The outputs of one commit's jobs, filled in by the workers.
struct Batch {
    slots: Mutex<Vec<Option<Outcome>>>,
    done: Condvar,
}

/// Jobs handed to the workers, to wait for.
pub(crate) struct Running {
    batch: Arc<Batch>,
}

/// Hands every job to the worker threads; the caller goes on and later
/// [waits](Running::wait) for them.
pub(crate) fn start(jobs: Vec<PhaseJob>) -> Running {
    let n = jobs.len();
    submit(jobs, n)
}

fn submit(jobs: Vec<PhaseJob>, slots: usize) -> Running {
    let batch = Arc::new(Batch {
        slots: Mutex::new((0..slots).map(|_| None).collect()),
        done: Condvar::new(),
    });
    let pool = pool();
    // The jobs log where the committing thread logs. `None`: nowhere, which is usually
    // the worker's own default too (no subscriber set at all): then nothing is carried or
    // entered.
    let dispatch = tracing::dispatcher::get_default(|d| (!is_none(d)).then(|| d.clone()));
    for (i, job) in jobs.into_iter().enumerate() {
        let batch = Arc::clone(&batch);
        let dispatch = dispatch.clone();
        pool.submit(Box::new(move || {
            let run = || panic::catch_unwind(AssertUnwindSafe(|| job.run()));
            let outcome = match dispatch {
                Some(dispatch) => tracing::dispatcher::with_default(&dispatch, run),
                None if tracing::dispatcher::get_default(is_none) => run(),
                // A global subscriber the committing thread had silenced.
                None => tracing::dispatcher::with_default(&tracing::Dispatch::none(), run),
            };
            lock(&batch.slots)[i] = Some(outcome);
            batch.done.notify_all();
        }));
    }
    Running { batch }
}

/// Whether `d` is the dispatcher that records nothing.
fn is_none(d: &tracing::Dispatch) -> bool {
    d.is::<tracing::subscriber::NoSubscriber>()
}

impl Running {
    /// Returns when every job has ended: their outcomes in the order they were given
    /// (`Err` holds a job's panic).
    pub(crate) fn wait(self) -> Vec<Outcome> {
        self.batch.wait(pool())
    }
}

/// Runs `jobs` at once: all but the last on the worker threads, the last on this thread;
/// returns when every job has ended, their outcomes in the order of `jobs` (`Err` holds
/// a job's panic).
pub(crate) fn run_all(mut jobs: Vec<PhaseJob>) -> Vec<Outcome> {
    let Some(last) = jobs.pop() else {
        return Vec::new();
    };
    let n = jobs.len();
    let running = submit(jobs, n + 1);
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| last.run()));
    lock(&running.batch.slots)[n] = Some(outcome);
    running.wait()
}

impl Batch {
    fn wait(&self, pool: &Pool) -> Vec<Outcome> {
        let mut slots = lock(&self.slots);
        while slots.iter().any(Option::is_none) {
            // No worker free (all busy, or none could be started): run a queued job here
            // rather than wait for a worker that may not come.
            let task = {
                let mut st = lock(&pool.state);
                if st.idle == 0 {
                    st.queue.pop_front()
                } else {
                    None
                }
            };
            if let Some(task) = task {
                drop(slots);
                task();
                slots = lock(&self.slots);
                continue;
            }
            slots = self
                .done
                .wait_timeout(slots, Duration::from_millis(100))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        slots
            .iter_mut()
            .map(|s| s.take().expect("every slot was checked to be filled"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Barrier;

    #[test]
    fn jobs_run_at_once_and_come_back_in_order() {
        // Every job waits for all the others: this only ends if they run concurrently.
        let barrier = Arc::new(Barrier::new(4));
        let jobs = (0..4)
            .map(|i| {
                let barrier = Arc::clone(&barrier);
                PhaseJob::new(move || {
                    barrier.wait();
                    i * 10
                })
            })
            .collect();
        let out: Vec<i32> = run_all(jobs)
            .into_iter()
            .map(|o| *o.expect("no panic").downcast::<i32>().expect("an i32"))
            .collect();
        assert_eq!(out, [0, 10, 20, 30]);
    }

    #[test]
    fn workers_are_reused_across_batches() {
        let ran = Arc::new(AtomicUsize::new(0));
        for _ in 0..50 {
            let jobs = (0..2)
                .map(|_| {
                    let ran = Arc::clone(&ran);
                    PhaseJob::new(move || ran.fetch_add(1, Ordering::SeqCst))
                })
                .collect();
            assert_eq!(run_all(jobs).len(), 2);
        }
        assert_eq!(ran.load(Ordering::SeqCst), 100);
        // One job per batch goes to a worker; other tests of this binary run batches too.
        assert!(phase_workers() <= 8, "{} workers", phase_workers());
    }

    #[test]
    fn a_panicking_job_is_reported_and_the_worker_survives() {
        let jobs = vec![
            PhaseJob::new(|| -> i32 { panic!("job failed") }),
            PhaseJob::new(|| 1),
        ];
        let out = run_all(jobs);
        assert!(out[0].is_err());
        assert!(out[1].is_ok());
        let again = run_all(vec![PhaseJob::new(|| 2), PhaseJob::new(|| 3)]);
        assert!(again.iter().all(Result::is_ok));
    }
}
