//! What kind of work a [`TaskKind`] is, asked by both sides: the coordinator (progress, stand-in
//! workers, job summaries) and the worker (snapshots, the repository it opens). One place, so
//! a new task kind is classified once and the two sides cannot disagree.

use crate::model::TaskKind;

impl TaskKind {
    /// Whether its progress counts objects moved (copies, restores, drills); summing checks and
    /// commits too would count the same objects twice.
    pub fn moves_objects(&self) -> bool {
        matches!(
            self,
            TaskKind::CopyPrefix { .. }
                | TaskKind::CopyCatalog { .. }
                | TaskKind::CopyLicence { .. }
                | TaskKind::RestoreObjects { .. }
                | TaskKind::DrillBackup { .. }
        )
    }

    /// Whether it reads a node's own store: the tasks a worker of the same shared bucket may run
    /// for a dead node, and that read the node's snapshot when the job took one. Not the catalog
    /// and licence tasks: they run after every node's copy and read the live store, whose
    /// catalog is at least as new as every node's snapshot (InfluxDB needs the catalog no older
    /// than the WAL and snapshots that name its ids).
    pub fn reads_node_store(&self) -> bool {
        matches!(self, TaskKind::CopyPrefix { .. } | TaskKind::CheckNodeConsistency { .. })
    }

    /// Whether its result depends on the repository's config. Only those report the config they
    /// opened, so the coordinator pins it: a QuestDB checkpoint task that lost an
    /// initialisation race must not be re-run for a repository it never used (a re-run would
    /// send `CHECKPOINT CREATE` twice).
    pub fn uses_repository(&self) -> bool {
        !matches!(
            self,
            TaskKind::QuestDbPrepare { .. }
                | TaskKind::QuestDbRelease { .. }
                | TaskKind::QuestDbRestoreTrigger { .. }
                | TaskKind::CheckRestoreTarget { .. }
                | TaskKind::WipeTarget { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::CopyPhase;

    #[test]
    fn test_each_kind_is_classified_as_both_sides_need() {
        let copy = TaskKind::CopyPrefix {
            phase: CopyPhase::Nodes,
            node: "n".into(),
            prefix: "n/wal/".into(),
            exclude: Vec::new(),
        };
        let catalog =
            TaskKind::CopyCatalog { catalog_prefix: "c/".into(), phase: CopyPhase::Catalog };
        let prepare =
            TaskKind::QuestDbPrepare { pg_addr: "q:8812".into(), adopt_checkpoint: false };
        let release = TaskKind::QuestDbRelease { pg_addr: "q:8812".into() };
        let wipe = TaskKind::WipeTarget { target_url: "file:///t".into(), prefixes: Vec::new() };
        // (kind, moves objects, reads the node's store, uses the repository)
        let cases = [
            (&copy, true, true, true),
            (&catalog, true, false, true),
            (&TaskKind::RemoveStaging, false, false, true),
            (&prepare, false, false, false),
            (&release, false, false, false),
            (&wipe, false, false, false),
        ];
        for (kind, moves, reads_node, repository) in cases {
            assert_eq!(kind.moves_objects(), moves, "{kind:?}");
            assert_eq!(kind.reads_node_store(), reads_node, "{kind:?}");
            assert_eq!(kind.uses_repository(), repository, "{kind:?}");
        }
    }
}
