//! The one thread compaction jobs run on.
//!
//! A job is blocking work (it reads and writes through the runtime with
//! `Handle::block_on`), so it cannot run on the runtime's workers. On
//! tokio's blocking pool each job could land on another thread, and the
//! allocator keeps the pages a thread freed for that thread: with a store
//! whose I/O also runs on the pool (a local folder), jobs spread over a
//! score of threads and the process held the memory of every one of them,
//! growing job after job. Jobs run one at a time anyway (the cycle awaits
//! each), so one long-lived thread runs them all and reuses the same
//! memory. A panic in a job is carried back to the caller.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::mpsc;

type Work = Box<dyn FnOnce() + Send>;

/// A thread that runs what it is given, in order.
pub struct JobThread {
    work: mpsc::Sender<Work>,
}

impl JobThread {
    /// Starts the thread inside `runtime`'s context (jobs' uploads spawn
    /// tasks on it, as on the runtime's own blocking pool); it ends when this
    /// is dropped.
    pub fn spawn(runtime: tokio::runtime::Handle) -> JobThread {
        let (work, queue) = mpsc::channel::<Work>();
        std::thread::Builder::new()
            .name("compact-job".into())
            .spawn(move || {
                let _context = runtime.enter();
                for job in queue {
                    job();
                }
            })
            .expect("start the compaction job thread");
        JobThread { work }
    }

    /// Runs `f` on the thread and waits for it; its panic is resumed here.
    pub async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Work = Box::new(move || {
            let _ = done.send(catch_unwind(AssertUnwindSafe(f)));
        });
        self.work
            .send(job)
            .expect("the job thread lives as long as the compactor");
        match result.await.expect("the job thread answers every job") {
            Ok(value) => value,
            Err(panic) => resume_unwind(panic),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_on_one_thread_in_order_and_carries_panics_back() {
        let thread = JobThread::spawn(tokio::runtime::Handle::current());
        let first = thread.run(|| std::thread::current().id()).await;
        let second = thread.run(|| std::thread::current().id()).await;
        assert_eq!(first, second);
        // In the runtime's context, as tokio's blocking pool is.
        assert!(
            thread
                .run(|| tokio::runtime::Handle::try_current().is_ok())
                .await
        );
        assert_ne!(first, std::thread::current().id());
        assert_eq!(
            thread
                .run(|| std::thread::current().name().map(str::to_owned))
                .await
                .as_deref(),
            Some("compact-job")
        );
        let panicked = tokio::spawn(async move {
            thread.run(|| panic!("a job failed")).await;
        })
        .await;
        assert!(panicked.is_err_and(|e| e.is_panic()));
    }
}
