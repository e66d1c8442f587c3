//! Stopping a run from outside it: another task, a thread, a signal
//! handler. A leaf, like `events`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Notify;

/// A handle that stops a run when [`Cancel::cancel`] is called on it or on
/// any of its clones. The step running then stops at its next host call
/// or within one epoch tick (10 ms) of guest code, fails as "cancelled",
/// and the flow rolls back as if that step had failed; steps not yet
/// started are skipped. The rollback itself is never cancelled: it is
/// what leaves the machine in a known state.
#[derive(Clone, Default, Debug)]
pub struct Cancel(Arc<Inner>);

#[derive(Default, Debug)]
struct Inner {
    cancelled: AtomicBool,
    notify: Notify,
}

impl Cancel {
    /// A handle no run has seen yet: pass clones to the run and to whatever stops it.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Stops the run (idempotent).
    pub fn cancel(&self) {
        self.0.cancelled.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    /// Whether [`Cancel::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::SeqCst)
    }

    /// Completes once the run is cancelled.
    pub(crate) async fn cancelled(&self) {
        let notified = self.0.notify.notified();
        tokio::pin!(notified);
        // Registered before the flag is read, so a cancel in between is
        // not missed.
        notified.as_mut().enable();
        if self.is_cancelled() {
            return;
        }
        notified.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_cancel_from_another_task_completes_the_wait() {
        let cancel = Cancel::new();
        let waiter = tokio::spawn({
            let cancel = cancel.clone();
            async move { cancel.cancelled().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        cancel.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("the wait ends")
            .unwrap();
        // Once cancelled, waiting returns at once.
        cancel.cancelled().await;
        assert!(cancel.is_cancelled());
    }
}
