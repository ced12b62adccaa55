//! The applied state, shared between the Raft state machine (the only writer) and the services
//! (readers), plus a change signal that long-polls and watch streams wait on.

use std::sync::RwLock;

use tokio::sync::watch;

use crate::core::{ClusterState, Command, CommandResponse};

/// The replica's applied [`ClusterState`].
#[derive(Debug)]
pub struct SharedState {
    /// A std lock: held only for in-memory reads and one `apply`, never across an `.await`.
    state: RwLock<ClusterState>,
    /// Bumped after every change (applied command, installed snapshot, progress report), so
    /// waiters re-read the state instead of polling on a timer.
    version_tx: watch::Sender<u64>,
}

impl Default for SharedState {
    fn default() -> Self {
        Self { state: RwLock::new(ClusterState::default()), version_tx: watch::channel(0).0 }
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
        let response = {
            let mut state = self.state.write().unwrap_or_else(|poison| poison.into_inner());
            state.apply(command)
        };
        self.notify();
        response
    }

    /// Replaces the whole state (snapshot install or start-up).
    pub fn replace(&self, new_state: ClusterState) {
        *self.state.write().unwrap_or_else(|poison| poison.into_inner()) = new_state;
        self.notify();
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
