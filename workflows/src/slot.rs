//! [`Slot`]: a value one branch of a workflow publishes and other branches wait for, so each
//! node goes on as soon as what *it* needs exists (its server, the load balancer, the secrets
//! bundle) instead of waiting at a barrier for every node's.

use tokio::sync::watch;

/// A value published once (or replaced by the same value) by one branch and awaited by others.
///
/// A waiter never fails: when the publishing branch fails instead, its error ends the run (the
/// branches are joined with `try_join`) and the waiters are dropped while they wait.
#[derive(Debug)]
pub struct Slot<T>(watch::Sender<Option<T>>);

impl<T: Clone> Slot<T> {
    /// An empty slot.
    pub fn new() -> Self {
        Slot(watch::channel(None).0)
    }

    /// Publishes `value`; waiters wake.
    pub fn set(&self, value: T) {
        self.0.send_replace(Some(value));
    }

    /// The value, once it is published.
    pub async fn get(&self) -> T {
        let mut rx = self.0.subscribe();
        // The sender lives as long as `self`, so the wait can only end with a value.
        let value = rx
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|v| v.clone());
        match value {
            Some(v) => v,
            None => std::future::pending().await,
        }
    }
}

impl<T: Clone> Default for Slot<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_get_the_published_value_and_the_last_replacement() {
        let slot = Slot::new();
        let waiter = async { slot.get().await };
        let publisher = async {
            tokio::task::yield_now().await;
            slot.set(7);
        };
        let (got, ()) = tokio::join!(waiter, publisher);
        assert_eq!(got, 7);
        slot.set(8);
        assert_eq!(slot.get().await, 8);
    }

    #[tokio::test]
    async fn a_waiter_without_a_value_keeps_waiting() {
        let slot: Slot<u8> = Slot::new();
        let waited = tokio::time::timeout(std::time::Duration::from_millis(20), slot.get()).await;
        assert!(waited.is_err(), "nothing was published");
    }
}
