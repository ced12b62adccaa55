//! The applied state, shared between the Raft state machine (the only writer) and the services
//! (readers), plus a change signal that long-polls and watch streams wait on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::{watch, Notify};

use crate::core::wake::Wake;
use crate::core::{ClusterState, Command, CommandResponse};

/// The replica's applied [`ClusterState`].
#[derive(Debug)]
pub struct SharedState {
    /// A std lock: held only for in-memory reads and one `apply`, never across an `.await`.
    state: RwLock<ClusterState>,
    /// Bumped after every change (applied command, installed snapshot, progress report), so
    /// waiters re-read the state instead of polling on a timer.
    version_tx: watch::Sender<u64>,
    /// Pulls waiting for tasks, by node (a std mutex: held for a map lookup): only the nodes a
    /// command gave runnable tasks are woken ([`crate::core::wake`]).
    node_wakers: Mutex<HashMap<String, Arc<Notify>>>,
    /// Woken when tasks any worker may take became runnable, or on changes that are not
    /// followed node by node: every waiting pull listens to it too.
    everyone: Arc<Notify>,
}

impl Default for SharedState {
    fn default() -> Self {
        Self {
            state: RwLock::new(ClusterState::default()),
            version_tx: watch::channel(0).0,
            node_wakers: Mutex::new(HashMap::new()),
            everyone: Arc::new(Notify::new()),
        }
    }
}

impl SharedState {
    /// Runs `read` on the current state.
    pub fn read<R>(&self, read: impl FnOnce(&ClusterState) -> R) -> R {
        let state = self.state.read().unwrap_or_else(|poison| poison.into_inner());
        read(&state)
    }

    /// Applies a committed command (called by the state machine only).
    pub fn apply(&self, command: Command) -> CommandResponse {
        let (response, wake) = {
            let mut state = self.state.write().unwrap_or_else(|poison| poison.into_inner());
            let before = crate::core::wake::before(&state, &command);
            let response = state.apply(command);
            (response, crate::core::wake::after(&state, before))
        };
        self.notify();
        self.wake(&wake);
        response
    }

    /// Replaces the whole state (snapshot install or start-up).
    pub fn replace(&self, new_state: ClusterState) {
        *self.state.write().unwrap_or_else(|poison| poison.into_inner()) = new_state;
        self.notify();
        self.wake(&Wake { everyone: true, ..Wake::default() });
    }

    /// The signals a pull from a worker of `node` waits on: its node's, and everyone's.
    pub fn task_wakers(&self, node: &str) -> (Arc<Notify>, Arc<Notify>) {
        let mut wakers = self.node_wakers.lock().unwrap_or_else(|poison| poison.into_inner());
        let node_waker = wakers.entry(node.to_string()).or_default().clone();
        (node_waker, self.everyone.clone())
    }

    fn wake(&self, wake: &Wake) {
        if wake.everyone {
            self.everyone.notify_waiters();
            return;
        }
        let wakers = self.node_wakers.lock().unwrap_or_else(|poison| poison.into_inner());
        for node in &wake.nodes {
            if let Some(waker) = wakers.get(node) {
                waker.notify_waiters();
            }
        }
    }

    /// Wakes every waiter.
    pub fn notify(&self) {
        self.version_tx.send_modify(|version| *version += 1);
    }

    /// A receiver that sees every later change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version_tx.subscribe()
    }
}
