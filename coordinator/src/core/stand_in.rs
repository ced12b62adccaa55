//! Standing in for a dead node's worker.
//!
//! InfluxDB 3 Enterprise usually keeps every node's files in one shared bucket. When a node
//! crashes, its co-located worker usually goes with it, and a backup would wait for it forever.
//! Another worker of the same source that reads the very same shared store can copy that node's
//! prefixes instead: same bytes, same keys. Only tasks that read the node's store qualify (copies
//! and the consistency check of a backup), only after the node's own workers have been silent
//! past the lease timeout, and only when the store is a cloud store both registered: two
//! `file://` stores with the same path are two different disks.

use bk_proto::model::TaskKind;

use super::domain::WorkerRecord;

/// URL schemes of stores every machine reaches alike.
const SHARED_SCHEMES: [&str; 7] =
    ["s3://", "s3a://", "gs://", "az://", "azure://", "abfs://", "abfss://"];

/// Whether `candidate` may run `kind`, placed on `node`, in place of that node's own workers
/// (`node_workers`, every worker registered for it), given which workers are silent.
pub fn may_stand_in<'a>(
    candidate: &WorkerRecord,
    node: &str,
    kind: &TaskKind,
    node_workers: impl IntoIterator<Item = &'a WorkerRecord>,
    is_silent: impl Fn(&WorkerRecord) -> bool,
) -> bool {
    let shared = SHARED_SCHEMES.iter().any(|scheme| candidate.store_url.starts_with(scheme));
    if !kind.reads_node_store() || !shared || candidate.node == node || is_silent(candidate) {
        return false;
    }
    let mut node_workers = node_workers
        .into_iter()
        .filter(|worker| worker.source == candidate.source && worker.node == node)
        .peekable();
    // A node nobody ever registered for: its store is unknown, so nobody stands in.
    if node_workers.peek().is_none() {
        return false;
    }
    let mut same_store = false;
    for worker in node_workers {
        if !is_silent(worker) {
            return false;
        }
        same_store |= worker.store_url == candidate.store_url;
    }
    same_store
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(node: &str, store_url: &str) -> WorkerRecord {
        WorkerRecord::for_test(&format!("prod/{node}"), node, store_url)
    }

    fn copy() -> TaskKind {
        TaskKind::CopyPrefix {
            phase: bk_proto::model::CopyPhase::Nodes,
            node: "node2".into(),
            prefix: "node2/wal/".into(),
            exclude: Vec::new(),
        }
    }

    #[test]
    fn test_who_may_stand_in_for_a_dead_node() {
        let bucket = "s3://influxdb-data";
        let node2 = worker("node2", bucket);
        let candidate = worker("node1", bucket);
        let dead = |worker: &WorkerRecord| worker.node == "node2";
        let alive = |_: &WorkerRecord| false;
        let cases: Vec<(&str, bool, bool)> = vec![
            (
                "node2 dead, same bucket",
                may_stand_in(&candidate, "node2", &copy(), [&node2], dead),
                true,
            ),
            ("node2 alive", may_stand_in(&candidate, "node2", &copy(), [&node2], alive), false),
            (
                "another bucket",
                may_stand_in(&worker("node1", "s3://other"), "node2", &copy(), [&node2], dead),
                false,
            ),
            (
                "file stores are per machine",
                may_stand_in(
                    &worker("node1", "file:///var/lib/influxdb3"),
                    "node2",
                    &copy(),
                    [&worker("node2", "file:///var/lib/influxdb3")],
                    dead,
                ),
                false,
            ),
            ("node2 never registered", may_stand_in(&candidate, "node2", &copy(), [], dead), false),
            (
                "not a read of the node's store",
                may_stand_in(&candidate, "node2", &TaskKind::RemoveStaging, [&node2], dead),
                false,
            ),
            (
                "the candidate is silent itself",
                may_stand_in(&candidate, "node2", &copy(), [&node2], |_| true),
                false,
            ),
        ];
        for (case, got, want) in cases {
            assert_eq!(got, want, "{case}");
        }
    }
}
