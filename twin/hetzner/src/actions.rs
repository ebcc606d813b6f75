//! The action engine: starting an action (its scaled duration, the resource it locks, the effect
//! applied when its timer fires), recording finished ones, completing and failing them, and the
//! `locked` check. The timers themselves run in [`crate::handle`].

use std::time::Duration;

use chrono::Utc;

use crate::error::ApiError;
use crate::hooks::HookEvent;
use crate::model::{Action, ActionStatus, Id, Kind};
use crate::world::{Effect, Scheduled, World};

impl World {
    /// Starts an action that runs for `base_secs / speed` and then applies `effect`.
    pub fn start_action(
        &mut self,
        command: &str,
        resources: Vec<(Id, &'static str)>,
        lock: Option<(Kind, Id)>,
        base_secs: f64,
        effect: Effect,
    ) -> Id {
        let id = self.next_id();
        let duration = self.scaled(base_secs);
        self.actions.insert(
            id,
            Action {
                id,
                command: command.to_string(),
                status: ActionStatus::Running,
                started: Utc::now(),
                finished: None,
                resources,
                error: None,
                duration,
                lock,
            },
        );
        self.running.insert(id);
        self.pending.push(Scheduled {
            action: id,
            delay: duration,
            effect,
        });
        id
    }

    /// Records an action that is already finished (e.g. a no-op poweron).
    pub fn finished_action(&mut self, command: &str, resources: Vec<(Id, &'static str)>) -> Id {
        let id = self.next_id();
        let now = Utc::now();
        self.actions.insert(
            id,
            Action {
                id,
                command: command.to_string(),
                status: ActionStatus::Success,
                started: now,
                finished: Some(now),
                resources,
                error: None,
                duration: Duration::ZERO,
                lock: None,
            },
        );
        id
    }

    /// Whether a running action locks this resource.
    pub fn is_locked(&self, kind: Kind, id: Id) -> bool {
        self.running.iter().any(|a| {
            self.actions
                .get(a)
                .is_some_and(|a| a.lock == Some((kind, id)))
        })
    }

    /// 423 `locked` if the resource has a running action.
    pub fn ensure_unlocked(&self, kind: Kind, id: Id) -> Result<(), ApiError> {
        if self.is_locked(kind, id) {
            Err(ApiError::locked())
        } else {
            Ok(())
        }
    }

    /// Queues an event for the hooks.
    pub fn emit(&mut self, e: HookEvent) {
        self.events.push(e);
    }

    /// Finishes a running action successfully and applies its effect.
    pub(crate) fn complete(&mut self, action: Id, effect: Effect) -> Vec<HookEvent> {
        if !self.running.remove(&action) {
            return Vec::new();
        }
        if let Some(a) = self.actions.get_mut(&action) {
            a.status = ActionStatus::Success;
            a.finished = Some(Utc::now());
        }
        effect(self)
    }

    /// Marks an action failed with an error code and message.
    pub fn fail_action(&mut self, action: Id, code: &str, message: &str) {
        self.running.remove(&action);
        if let Some(a) = self.actions.get_mut(&action) {
            a.status = ActionStatus::Error;
            a.finished = Some(Utc::now());
            a.error = Some((code.to_string(), message.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::handle::TwinState;
    use crate::hooks::ServerHooks;
    use crate::ratelimit::RateLimit;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn state(speed: f64) -> TwinState {
        TwinState::new(
            "127.200.0.0/20".parse().unwrap(),
            speed,
            None,
            RateLimit::default(),
        )
    }

    #[derive(Default)]
    struct Counting {
        deleted: AtomicUsize,
    }
    impl ServerHooks for Counting {
        fn server_deleted(&self, _id: Id) {
            self.deleted.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn action_locks_until_its_timer_fires() {
        let st = state(1.0);
        let id = st
            .mutate(|w| {
                Ok(w.start_action(
                    "poweron",
                    vec![(7, "server")],
                    Some((Kind::Server, 7)),
                    10.0,
                    Box::new(|_| vec![HookEvent::Deleted(7)]),
                ))
            })
            .unwrap();
        let hooks = Arc::new(Counting::default());
        st.set_hooks(hooks.clone());
        let mut changes = st.changes();
        let seen = *changes.borrow_and_update();
        assert!(st.world().is_locked(Kind::Server, 7));
        assert!(!st.world().is_locked(Kind::Server, 8));
        tokio::time::sleep(Duration::from_secs(11)).await;
        let w = st.world();
        assert!(!w.is_locked(Kind::Server, 7));
        assert_eq!(w.actions[&id].status, ActionStatus::Success);
        assert_eq!(w.actions[&id].progress(), 100);
        drop(w);
        assert_eq!(hooks.deleted.load(Ordering::SeqCst), 1);
        assert!(changes.has_changed().unwrap());
        assert!(*changes.borrow_and_update() > seen);
    }
}
