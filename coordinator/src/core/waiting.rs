//! Why a runnable task is not running: the answer an operator needs at 3 a.m. instead of a job
//! that silently hangs.

use std::collections::BTreeMap;
use std::time::Duration;

use super::domain::WorkerRecord;
use super::job::Placement;

/// Explains why a pending task with `placement` in source `source` has no worker, or returns
/// `None` when a live worker could take it. `last_seen` maps worker ids to how long ago the
/// leader heard from them (absent: never since this leader started).
pub fn waiting_reason(
    source: &str,
    placement: &Placement,
    workers: &BTreeMap<String, WorkerRecord>,
    last_seen: &BTreeMap<String, Duration>,
    lease_timeout: Duration,
) -> Option<String> {
    let candidates: Vec<&WorkerRecord> = workers
        .values()
        .filter(|worker| match placement {
            Placement::Node(node) => worker.source == source && worker.node == *node,
            Placement::AnyNode => worker.source == source,
            Placement::DrillWorker => worker.source == source && worker.drills,
            Placement::RepositoryHolder(repository) => worker.can_open(repository),
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
    use super::*;

    fn worker(id: &str, node: &str) -> WorkerRecord {
        WorkerRecord::for_test(id, node, "")
    }

    #[test]
    fn test_waiting_reasons() {
        let workers: BTreeMap<String, WorkerRecord> =
            [("w1".to_string(), worker("w1", "node1"))].into_iter().collect();
        let timeout = Duration::from_secs(30);
        let fresh: BTreeMap<String, Duration> = [("w1".to_string(), Duration::from_secs(1))].into();
        let stale: BTreeMap<String, Duration> =
            [("w1".to_string(), Duration::from_secs(95))].into();
        let never: BTreeMap<String, Duration> = BTreeMap::new();
        let node = |n: &str| Placement::Node(n.to_string());
        let cases: Vec<(Placement, &BTreeMap<String, Duration>, Option<&str>)> = vec![
            (node("node1"), &fresh, None),
            (Placement::AnyNode, &fresh, None),
            (node("node2"), &fresh, Some("none registered for node `node2` of source `prod`")),
            (node("node1"), &stale, Some("`w1` last seen 95s ago")),
            (node("node1"), &never, Some("`w1` not seen since")),
            (Placement::DrillWorker, &fresh, Some("with a [drill] section; add a [drill] section")),
        ];
        for (placement, seen, expected) in cases {
            let reason = waiting_reason("prod", &placement, &workers, seen, timeout);
            match expected {
                None => assert_eq!(reason, None, "{placement:?}"),
                Some(text) => assert!(
                    reason.as_deref().unwrap_or("").contains(text),
                    "{reason:?} lacks {text}"
                ),
            }
        }
    }
}
