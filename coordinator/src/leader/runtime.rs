//! Worker liveness and task progress, in the leader's memory.
//!
//! Neither goes through Raft: heartbeats and byte counts grow with time and objects, and the
//! replicated log must grow with tasks only. A new leader starts with empty maps and gives every
//! worker a full lease timeout, counted from when it became leader, to show up.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bk_proto::ids::{TaskId, WorkerId};
use bk_proto::pb::Progress;

/// In-memory state of the leader.
#[derive(Debug, Default)]
pub struct LeaderRuntime {
    /// A std mutex: every access is a short map update, never held across an `.await`.
    inner: Mutex<RuntimeInner>,
}

#[derive(Debug, Default)]
struct RuntimeInner {
    last_seen: HashMap<WorkerId, Instant>,
    /// Each worker's object-store retry count, from its last heartbeat.
    store_retries: HashMap<WorkerId, u64>,
    progress: HashMap<TaskId, (u32, Progress)>,
    leader_since: Option<Instant>,
    /// Tasks a pull is proposing a lease for right now: other pulls skip them instead of
    /// proposing the same lease, losing the race and writing a rejected entry to the log.
    leasing: HashSet<TaskId>,
    /// Leases taken back while this replica led, by reason (for `/metrics`).
    requeued: BTreeMap<&'static str, u64>,
    /// The workers found silent last, and when: a thousand pulls in a second share one answer.
    silent: Option<(Instant, Arc<HashSet<WorkerId>>)>,
}

/// How long a computed set of silent workers is reused.
const SILENT_CACHE: Duration = Duration::from_millis(250);

/// A task reserved for one pull's lease proposal; released when dropped (also when the pull is
/// cancelled mid-proposal).
pub struct LeaseReservation<'a> {
    runtime: &'a LeaderRuntime,
    task_id: TaskId,
}

impl Drop for LeaseReservation<'_> {
    fn drop(&mut self) {
        self.runtime.lock().leasing.remove(&self.task_id);
    }
}

impl LeaderRuntime {
    fn lock(&self) -> std::sync::MutexGuard<'_, RuntimeInner> {
        self.inner.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// Reserves `task_id` for a lease proposal; `None` when another pull already has it.
    pub fn reserve_lease(&self, task_id: TaskId) -> Option<LeaseReservation<'_>> {
        // The guard must be gone before a reservation exists: dropping one (the `None` case of
        // an eager `then_some`) locks again.
        let inserted = self.lock().leasing.insert(task_id);
        inserted.then(|| LeaseReservation { runtime: self, task_id })
    }

    /// Whether a pull is proposing a lease for `task_id` right now.
    pub fn is_being_leased(&self, task_id: &TaskId) -> bool {
        self.lock().leasing.contains(task_id)
    }

    /// Counts a lease taken back for `reason`.
    pub fn count_requeue(&self, reason: &'static str) {
        *self.lock().requeued.entry(reason).or_default() += 1;
    }

    /// Leases taken back while this replica led, by reason.
    pub fn requeues(&self) -> BTreeMap<&'static str, u64> {
        self.lock().requeued.clone()
    }

    /// Records that `worker_id` was just heard from.
    pub fn touch(&self, worker_id: &str) {
        self.lock().last_seen.insert(WorkerId::from(worker_id), Instant::now());
    }

    /// Records a worker's object-store retry count (cumulative, from its heartbeat).
    pub fn record_store_retries(&self, worker_id: &str, retries: u64) {
        self.lock().store_retries.insert(WorkerId::from(worker_id), retries);
    }

    /// Each worker's object-store retry count, as last reported.
    pub fn store_retries(&self) -> BTreeMap<WorkerId, u64> {
        self.lock().store_retries.iter().map(|(worker, count)| (worker.clone(), *count)).collect()
    }

    /// How long ago each worker was heard from.
    pub fn last_seen_ago(&self) -> BTreeMap<WorkerId, Duration> {
        let now = Instant::now();
        self.lock()
            .last_seen
            .iter()
            .map(|(worker, seen)| (worker.clone(), now.duration_since(*seen)))
            .collect()
    }

    /// How long a worker has been silent: since its last message, or since this replica became
    /// leader when it has not been heard from since.
    pub fn silence(&self, worker_id: &str) -> Duration {
        let inner = self.lock();
        let since = inner
            .last_seen
            .get(worker_id)
            .copied()
            .or(inner.leader_since)
            .unwrap_or_else(Instant::now);
        since.elapsed()
    }

    /// Which of `workers` have been silent longer than `timeout` (as [`LeaderRuntime::silence`]
    /// says), computed under one lock and reused for `SILENT_CACHE`.
    pub fn silent_workers<'a>(
        &self,
        workers: impl IntoIterator<Item = &'a WorkerId>,
        timeout: Duration,
    ) -> Arc<HashSet<WorkerId>> {
        let mut inner = self.lock();
        if let Some((at, silent)) = &inner.silent {
            if at.elapsed() < SILENT_CACHE {
                return silent.clone();
            }
        }
        let now = Instant::now();
        let silent: HashSet<WorkerId> = workers
            .into_iter()
            .filter(|worker| {
                let since =
                    inner.last_seen.get(*worker).copied().or(inner.leader_since).unwrap_or(now);
                now.duration_since(since) > timeout
            })
            .cloned()
            .collect();
        let silent = Arc::new(silent);
        inner.silent = Some((now, silent.clone()));
        silent
    }

    /// How long this replica has known itself leader (zero when it is not).
    pub fn leader_for(&self) -> Duration {
        self.lock().leader_since.map_or(Duration::ZERO, |since| since.elapsed())
    }

    /// Tracks leadership: a replica that just became leader starts every worker's clock anew.
    pub fn set_leader(&self, is_leader: bool) {
        let mut inner = self.lock();
        match (is_leader, inner.leader_since) {
            (true, None) => {
                // Not cleared: a worker heard from before leadership was first observed here
                // (it races with registration) must not vanish from `bkctl workers`.
                let now = Instant::now();
                inner.leader_since = Some(now);
                inner.last_seen.values_mut().for_each(|seen| *seen = now);
                inner.progress.clear();
            }
            (false, Some(_)) => inner.leader_since = None,
            _ => {}
        }
    }

    /// Records progress of attempt `attempt` of a task.
    pub fn record_progress(&self, task_id: TaskId, attempt: u32, progress: Progress) {
        self.lock().progress.insert(task_id, (attempt, progress));
    }

    /// The last progress of the given attempt, if reported.
    pub fn progress(&self, task_id: &TaskId, attempt: u32) -> Option<Progress> {
        let inner = self.lock();
        let (reported_attempt, progress) = inner.progress.get(task_id)?;
        (*reported_attempt == attempt).then_some(*progress)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_a_reserved_lease_is_refused_to_a_second_pull_until_released() {
        let runtime = LeaderRuntime::default();
        let task_id: TaskId = "01M80STYX9KJT1N0PB9VM58TPX/p0/t1".parse().unwrap();
        let first = runtime.reserve_lease(task_id).expect("free at first");
        assert!(runtime.reserve_lease(task_id).is_none(), "reserved twice");
        assert!(runtime.is_being_leased(&task_id), "a refused reservation released the first");
        drop(first);
        assert!(!runtime.is_being_leased(&task_id));
        assert!(runtime.reserve_lease(task_id).is_some());
    }
}
