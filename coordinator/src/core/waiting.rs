//! Why a runnable task is not running: the answer an operator needs at 3 a.m. instead of a job
//! that silently hangs.

use bk_proto::ids::WorkerId;
use std::collections::BTreeMap;
use std::time::Duration;

use super::domain::WorkerRecord;
use super::eligibility::may_take;
use super::job::{Placement, PlannedTask};

/// Explains why pending `task` of a job of `source` has no worker, or returns `None` when a
/// live worker could take it (its own, or a stand-in: the rule is [`may_take`]'s). `last_seen`
/// maps worker ids to how long ago the leader heard from them (absent: never since this leader
/// started).
pub fn waiting_reason(
    source: &str,
    task: &PlannedTask,
    workers: &BTreeMap<WorkerId, WorkerRecord>,
    last_seen: &BTreeMap<WorkerId, Duration>,
    lease_timeout: Duration,
) -> Option<String> {
    let placement = &task.placement;
    let is_silent = |worker: &WorkerRecord| {
        last_seen.get(&worker.worker_id).is_none_or(|ago| *ago > lease_timeout)
    };
    let candidates: Vec<&WorkerRecord> = workers
        .values()
        .filter(|worker| {
            // The node's own workers count even when silent: they are who the reason names.
            let own = matches!(placement, Placement::Node(node) if worker.source == source && worker.node == *node);
            own || may_take(worker, source, task, workers.values(), is_silent)
        })
        .collect();
    let wanted = match placement {
        Placement::Node(node) => format!("node `{node}` of source `{source}`"),
        Placement::AnyNode => format!("any node of source `{source}`"),
        Placement::DrillWorker => format!("a worker of source `{source}` with a [drill] section"),
        Placement::RepositoryHolder(repository) => {
            format!("a worker holding the passphrase of repository `{repository}`")
        }
    };
    if candidates.is_empty() {
        let fix = match placement {
            Placement::RepositoryHolder(repository) => format!(
                "give a worker `password_file` under [repositories.{repository}] (or a default \
                 `repository_password_file`)"
            ),
            Placement::DrillWorker => {
                "add a [drill] section with `scratch_dir` (space of its own, \
                 apart from the store and every repository) to a worker of that source and \
                 restart it"
                    .to_string()
            }
            _ => "start `bk-worker` there".to_string(),
        };
        return Some(format!("waiting for a worker: none registered for {wanted}; {fix}"));
    }
    let live = candidates
        .iter()
        .any(|worker| last_seen.get(&worker.worker_id).is_some_and(|ago| *ago <= lease_timeout));
    if live {
        return None;
    }
    let seen: Vec<String> = candidates
        .iter()
        .map(|worker| match last_seen.get(&worker.worker_id) {
            Some(ago) => format!("`{}` last seen {}s ago", worker.worker_id, ago.as_secs()),
            None => format!("`{}` not seen since this coordinator became leader", worker.worker_id),
        })
        .collect();
    Some(format!("waiting for a worker for {wanted}: {}", seen.join(", ")))
}

#[cfg(test)]
mod tests {
    use bk_proto::model::TaskKind;

    use super::*;

    fn worker(id: &str, node: &str) -> WorkerRecord {
        WorkerRecord::for_test(id, node, "")
    }

    fn task(placement: Placement, kind: TaskKind) -> PlannedTask {
        PlannedTask::new("t".into(), placement, kind)
    }

    fn copy(node: &str) -> TaskKind {
        TaskKind::CopyPrefix {
            phase: bk_proto::model::CopyPhase::Nodes,
            node: node.into(),
            prefix: format!("{node}/wal/"),
            exclude: Vec::new(),
        }
    }

    #[test]
    fn test_waiting_reasons() {
        let workers: BTreeMap<WorkerId, WorkerRecord> =
            [("w1".into(), worker("w1", "node1"))].into_iter().collect();
        let timeout = Duration::from_secs(30);
        let fresh: BTreeMap<WorkerId, Duration> = [("w1".into(), Duration::from_secs(1))].into();
        let stale: BTreeMap<WorkerId, Duration> = [("w1".into(), Duration::from_secs(95))].into();
        let never: BTreeMap<WorkerId, Duration> = BTreeMap::new();
        let node = |n: &str| task(Placement::Node(n.to_string()), copy(n));
        let any = task(Placement::AnyNode, TaskKind::RemoveStaging);
        let drill = task(Placement::DrillWorker, TaskKind::RemoveStaging);
        let cases: Vec<(PlannedTask, &BTreeMap<WorkerId, Duration>, Option<&str>)> = vec![
            (node("node1"), &fresh, None),
            (any, &fresh, None),
            (node("node2"), &fresh, Some("none registered for node `node2` of source `prod`")),
            (node("node1"), &stale, Some("`w1` last seen 95s ago")),
            (node("node1"), &never, Some("`w1` not seen since")),
            (drill, &fresh, Some("with a [drill] section; add a [drill] section")),
        ];
        for (task, seen, expected) in cases {
            let reason = waiting_reason("prod", &task, &workers, seen, timeout);
            match expected {
                None => assert_eq!(reason, None, "{:?}", task.placement),
                Some(text) => assert!(
                    reason.as_deref().unwrap_or("").contains(text),
                    "{reason:?} lacks {text}"
                ),
            }
        }
    }

    #[test]
    fn test_a_task_a_stand_in_may_run_is_not_waiting_for_its_dead_node() {
        let bucket = "s3://influxdb-data";
        let workers: BTreeMap<WorkerId, WorkerRecord> = [
            ("prod/node1".into(), WorkerRecord::for_test("prod/node1", "node1", bucket)),
            ("prod/node2".into(), WorkerRecord::for_test("prod/node2", "node2", bucket)),
        ]
        .into();
        let seen: BTreeMap<WorkerId, Duration> = [
            ("prod/node1".into(), Duration::from_secs(95)),
            ("prod/node2".into(), Duration::from_secs(1)),
        ]
        .into();
        let timeout = Duration::from_secs(30);
        // node1 is dead; node2 reads the same bucket and may copy node1's prefixes.
        let copy_node1 = task(Placement::Node("node1".into()), copy("node1"));
        assert_eq!(waiting_reason("prod", &copy_node1, &workers, &seen, timeout), None);
        // A task that does not read the node's store still waits for node1, naming it.
        let other = task(Placement::Node("node1".into()), TaskKind::RemoveStaging);
        let reason = waiting_reason("prod", &other, &workers, &seen, timeout).unwrap_or_default();
        assert!(reason.contains("`prod/node1` last seen 95s ago"), "{reason}");
    }
}
