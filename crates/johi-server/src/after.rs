//! Completion hooks run after the response is out.
//!
//! A request's bookkeeping (the audit record, the meter, the limit commit, the ledger record)
//! needs the response's outcome but nothing in it needs to wait for the bookkeeping. So the
//! relay fixes the outcome ([`Completion::settle`]) and hands the hook to one background task,
//! which the runtime runs once the connection's task has written the response and yielded:
//! the client's answer (for a stream, its last chunk) goes out first.
//!
//! Hooks that the client's next request must see (`Processor::completes_before_response`,
//! e.g. a released concurrency lease) run when the outcome is fixed, before the answer.
//!
//! Why a queue and one task rather than a task per request: spawning cost about 4 000
//! instructions per request (callgrind, 2026-12-07), the queue about 1 700 in all (push,
//! wake-up, the task's turn); under load the task takes many hooks per wake-up.
//!
//! Nothing is lost: a settled completion runs its hook when it is dropped, so hooks still
//! queued when the runtime goes away run as the queue is dropped; graceful shutdown waits
//! for the queue to empty ([`AfterResponse::drained`]) before the writers flush.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use johi_core::exchange::Outcome;
use johi_pipeline::{Completion, Settled};
use tokio::sync::Notify;

/// Where completion hooks wait for their responses to go out. Cheap to clone (shared).
#[derive(Clone)]
pub struct AfterResponse {
    /// `None`: hooks run at once, where they are handed over (no runtime to defer them to).
    backlog: Option<Arc<Backlog>>,
}

struct Backlog {
    waiting: Mutex<Vec<Settled>>,
    /// Wakes the runner: a hook was queued into an empty backlog.
    queued: Notify,
    /// Hooks handed over and not yet run.
    pending: AtomicUsize,
    /// Notified whenever `pending` drops to zero.
    idle: Notify,
}

impl AfterResponse {
    /// Defers hooks to a task spawned here, on the current Tokio runtime (the server's).
    pub fn spawn() -> Self {
        let backlog = Arc::new(Backlog {
            waiting: Mutex::new(Vec::new()),
            queued: Notify::new(),
            pending: AtomicUsize::new(0),
            idle: Notify::new(),
        });
        tokio::spawn(run(backlog.clone()));
        AfterResponse {
            backlog: Some(backlog),
        }
    }

    /// Runs every hook at once, where it is handed over: for building a runtime that never
    /// serves (`johi check`) and for tests that read a hook's effect right away.
    pub fn inline() -> Self {
        AfterResponse { backlog: None }
    }

    /// Completes `completion` with `outcome` once the current task has yielded (at once for
    /// [`AfterResponse::inline`]).
    pub fn finish(&self, completion: Completion, outcome: Outcome) {
        let settled = completion.settle(outcome);
        let Some(backlog) = &self.backlog else {
            return; // `settled` is dropped here: the hook runs now
        };
        backlog.pending.fetch_add(1, Ordering::AcqRel);
        let first = {
            let mut waiting = backlog.lock();
            waiting.push(settled);
            waiting.len() == 1
        };
        if first {
            backlog.queued.notify_one();
        }
    }

    /// Waits until every hook handed over so far has run (at shutdown, before the audit
    /// and ledger writers flush).
    pub async fn drained(&self) {
        let Some(backlog) = &self.backlog else {
            return;
        };
        loop {
            let idle = backlog.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if backlog.pending.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }
}

impl Backlog {
    fn lock(&self) -> MutexGuard<'_, Vec<Settled>> {
        // Pushes and swaps only: a poisoned lock holds a consistent vector.
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Runs queued hooks, a batch per wake-up, for as long as the runtime runs. When the
/// runtime drops this task, the backlog's last handle (the server's) still runs whatever
/// it holds as it is dropped.
async fn run(backlog: Arc<Backlog>) {
    let mut batch: Vec<Settled> = Vec::new();
    loop {
        std::mem::swap(&mut *backlog.lock(), &mut batch);
        if batch.is_empty() {
            // A hook queued since the swap left a permit: this returns at once.
            backlog.queued.notified().await;
            continue;
        }
        let ran = batch.len();
        // Dropping a settled completion runs its hook.
        batch.clear();
        if backlog.pending.fetch_sub(ran, Ordering::AcqRel) == ran {
            backlog.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http::{HeaderMap, StatusCode};
    use johi_core::{Api, Exchange, FacetSet};
    use johi_pipeline::{Category, Configured, Contract, FailureMode, Processor, RetryScope};

    use super::*;

    /// Records the status of every outcome its completion hook sees.
    struct Recorder {
        contract: Contract,
        seen: Arc<Mutex<Vec<u16>>>,
        /// What [`Processor::completes_before_response`] answers.
        early: bool,
    }

    impl Processor for Recorder {
        fn contract(&self) -> &Contract {
            &self.contract
        }

        fn has_request_phase(&self) -> bool {
            false
        }

        fn completes_before_response(&self) -> bool {
            self.early
        }

        fn on_complete(&self, _exchange: &Exchange, outcome: &Outcome) {
            if let Ok(mut seen) = self.seen.lock() {
                seen.push(outcome.status.as_u16());
            }
        }
    }

    fn recorder(name: &'static str, early: bool) -> (Configured, Arc<Mutex<Vec<u16>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorder = Recorder {
            contract: Contract {
                name,
                category: Category::Observe,
                reads: FacetSet::EMPTY,
                writes: FacetSet::EMPTY,
                retry: RetryScope::Once,
                on_failure: FailureMode::FailOpen,
            },
            seen: seen.clone(),
            early,
        };
        (Configured::new(Arc::new(recorder)), seen)
    }

    /// A pipeline of one [`Recorder`] (completing after the response), and what it records.
    fn recorded() -> (Arc<johi_pipeline::Pipeline>, Arc<Mutex<Vec<u16>>>) {
        let (late, seen) = recorder("recorder", false);
        let pipeline = johi_pipeline::build(vec![late])
            .unwrap_or_else(|_| panic!("a lone observer is a valid pipeline"));
        (Arc::new(pipeline), seen)
    }

    fn completion(pipeline: &Arc<johi_pipeline::Pipeline>) -> Completion {
        let exchange = Exchange::new(Api::ChatCompletions, HeaderMap::new(), Bytes::new());
        Completion::new(pipeline.clone(), exchange)
    }

    fn statuses(seen: &Mutex<Vec<u16>>) -> Vec<u16> {
        seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Handing a hook over does not run it: it runs once the current task yields, with the
    /// outcome it was handed over with. (Run inline, the first check fails.)
    #[tokio::test(flavor = "current_thread")]
    async fn a_hook_runs_after_the_current_task_yields() {
        let (pipeline, seen) = recorded();
        let after = AfterResponse::spawn();
        after.finish(completion(&pipeline), Outcome::ok(StatusCode::OK, 1));
        after.finish(
            completion(&pipeline),
            Outcome::ok(StatusCode::BAD_GATEWAY, 2),
        );
        assert!(
            statuses(&seen).is_empty(),
            "a hook ran before its task yielded"
        );
        tokio::task::yield_now().await;
        assert_eq!(statuses(&seen), [200, 502]);
    }

    /// A processor that completes before the response (a concurrency lease to give back)
    /// has run when the completion is handed over; the others run after the yield, and a
    /// cancelled exchange still reaches both.
    #[tokio::test(flavor = "current_thread")]
    async fn hooks_that_must_precede_the_response_run_when_it_is_handed_over() {
        let (early, early_seen) = recorder("early", true);
        let (late, late_seen) = recorder("late", false);
        let pipeline = Arc::new(
            johi_pipeline::build(vec![early, late])
                .unwrap_or_else(|_| panic!("two observers are a valid pipeline")),
        );
        let after = AfterResponse::spawn();
        after.finish(completion(&pipeline), Outcome::ok(StatusCode::OK, 1));
        assert_eq!(statuses(&early_seen), [200], "the early hook ran at once");
        assert!(statuses(&late_seen).is_empty());
        tokio::task::yield_now().await;
        assert_eq!(statuses(&early_seen), [200], "and only once");
        assert_eq!(statuses(&late_seen), [200]);
        drop(completion(&pipeline));
        assert_eq!(statuses(&early_seen), [200, 499]);
        assert_eq!(statuses(&late_seen), [200, 499]);
    }

    /// `drained` returns once every hook handed over has run, and not before.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn drained_waits_for_every_hook_handed_over() {
        let (pipeline, seen) = recorded();
        let after = AfterResponse::spawn();
        for _ in 0..500 {
            after.finish(completion(&pipeline), Outcome::ok(StatusCode::OK, 1));
        }
        after.drained().await;
        assert_eq!(statuses(&seen).len(), 500);
        // With nothing pending it returns at once.
        after.drained().await;
    }

    /// Hooks still queued when the runtime shuts down run, with their own outcomes (not as
    /// cancellations), when the last handle is dropped.
    #[test]
    fn hooks_queued_at_shutdown_run_when_the_queue_is_dropped() {
        let (pipeline, seen) = recorded();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let after = runtime.block_on(async {
            let after = AfterResponse::spawn();
            after.finish(completion(&pipeline), Outcome::ok(StatusCode::OK, 1));
            after
        });
        drop(runtime);
        assert!(statuses(&seen).is_empty(), "the runner never ran");
        drop(after);
        assert_eq!(statuses(&seen), [200]);
    }

    /// `inline` runs the hook where it is handed over (for `johi check` and tests).
    #[test]
    fn inline_runs_the_hook_at_once() {
        let (pipeline, seen) = recorded();
        AfterResponse::inline().finish(completion(&pipeline), Outcome::ok(StatusCode::OK, 1));
        assert_eq!(statuses(&seen), [200]);
    }
}
