//! InfluxDB 3 backup plans. Pure.
//!
//! Enterprise (see `shared/reference/influxdb3-layout.md`):
//! 1. `compactor`: the compactor's `cs/`, `cd/`, `c/`, on the compactor's worker.
//! 2. `nodes`: per node (data nodes and the compactor), in parallel, on that node's worker:
//!    `wal/`, `snapshots/`, `dbs/`, plus one task for every other prefix under the node, so a
//!    prefix a future version adds is never skipped silently. `table-snapshots/` is excluded
//!    (regenerated at start-up) and the exclusion recorded.
//! 3. `catalog`: after all node data, so it is at least as new as every WAL file and snapshot it
//!    must describe; the worker detects the v3, v2 or v1 layout (none is an error).
//! 4. `licence`: `commercial_license`, `trial_or_home_license` if present.
//! 5. `commit`: the manifest, written last, is the backup's single commit point.
//!
//! Core is the one-node case: no compactor or licence phase, and the catalog lives under the
//! node id, so the node's catch-all task leaves `catalog/` to the catalog phase.

use bk_proto::ids::{JobId, TaskId, TaskSlot};
use bk_proto::model::{CopyPhase, ExcludeRule, PartRef, TaskKind};

use bk_proto::influxdb3_layout::{
    COMPACTOR_PREFIXES, NODE_DATA_PREFIXES, TABLE_SNAPSHOTS_PREFIX, TABLE_SNAPSHOTS_REASON,
};

use super::error::PlanError;
use super::request::{NewBackup, MAX_REPAIR_ROUNDS};
use crate::core::domain::SourceSpec;
use crate::core::job::{JobKind, JobSpec, Placement, PlannedPhase, PlannedTask};

/// Plans a backup of an InfluxDB 3 `source` (Enterprise or Core) into `repository`.
///
/// # Errors
/// [`PlanError::InvalidSource`] for a source of another kind (the caller dispatches by kind).
pub(super) fn backup(new: &NewBackup<'_>) -> Result<JobSpec, PlanError> {
    let NewBackup { source, repository, job_id, backup_id, created_at_ms, options } = *new;
    let snapshot_nodes: Vec<String> = source
        .spec
        .nodes()
        .into_iter()
        .filter(|node| options.snapshot_nodes.contains(node))
        .collect();
    let mut phases = Vec::new();
    if !snapshot_nodes.is_empty() && !matches!(source.spec, SourceSpec::QuestDb { .. }) {
        phases.push(snapshot_phase(&snapshot_nodes));
    }
    let (catalog_prefix, licence_prefix) = match &source.spec {
        SourceSpec::QuestDb { .. } => {
            return Err(PlanError::InvalidSource {
                source_name: source.name.to_string(),
                reason: "a QuestDB source is planned by the QuestDB planner".to_string(),
            })
        }
        SourceSpec::InfluxDb3Enterprise { cluster_id, compactor_node, data_nodes, .. } => {
            phases.push(compactor_phase(compactor_node));
            let mut nodes = data_nodes.clone();
            nodes.push(compactor_node.clone());
            phases.push(nodes_phase(&nodes, compactor_node, None));
            (format!("{cluster_id}/"), Some(format!("{cluster_id}/")))
        }
        SourceSpec::InfluxDb3Core { node, .. } => {
            phases.push(nodes_phase(std::slice::from_ref(node), "", Some("catalog/")));
            (format!("{node}/"), None)
        }
    };
    phases.push(PlannedPhase {
        name: "catalog".to_string(),
        tasks: vec![PlannedTask::new(
            format!("copy catalog under {catalog_prefix}"),
            Placement::AnyNode,
            TaskKind::CopyCatalog { catalog_prefix, phase: CopyPhase::Catalog },
        )],
    });
    if let Some(cluster_prefix) = licence_prefix {
        phases.push(PlannedPhase {
            name: "licence".to_string(),
            tasks: vec![PlannedTask::new(
                format!("copy licence files under {cluster_prefix}"),
                Placement::AnyNode,
                TaskKind::CopyLicence { cluster_prefix, phase: CopyPhase::Licence },
            )],
        });
    }
    link_consistency_parts(job_id, &mut phases);
    let parts = copy_task_ids(job_id, &phases);
    let mut cleanup: Vec<PlannedTask> = if phases[0].name == "snapshot" {
        snapshot_nodes.iter().map(|node| delete_snapshot_task(node)).collect()
    } else {
        Vec::new()
    };
    cleanup.push(PlannedTask {
        label: "remove staging".to_string(),
        placement: Placement::AnyNode,
        kind: TaskKind::RemoveStaging,
        // After the snapshots are deleted: their records are in staging.
        depends_on: (0..cleanup.len() as u32).collect(),
        retry_until_success: false,
    });
    phases.push(PlannedPhase {
        name: "commit".to_string(),
        tasks: vec![PlannedTask::new(
            format!("commit backup {backup_id}"),
            Placement::AnyNode,
            TaskKind::CommitBackup { backup_id, created_at_ms, parts },
        )],
    });
    Ok(JobSpec {
        kind: JobKind::Backup,
        parent: options.parent,
        scheduled: None,
        backup_id: Some(backup_id),
        source_spec: Some(source.spec.clone()),
        source: source.name.clone(),
        repository: repository.clone(),
        nodes: source.spec.nodes(),
        phases,
        cleanup,
        allow_corrupt: options.allow_corrupt,
    })
}

/// Each node's snapshot, before any copy: the node's copy tasks read it.
fn snapshot_phase(nodes: &[String]) -> PlannedPhase {
    let tasks = nodes
        .iter()
        .map(|node| {
            PlannedTask::new(
                format!("snapshot {node}'s store"),
                Placement::Node(node.clone()),
                TaskKind::TakeSnapshot { node: node.clone() },
            )
        })
        .collect();
    PlannedPhase { name: "snapshot".to_string(), tasks }
}

fn delete_snapshot_task(node: &str) -> PlannedTask {
    PlannedTask::new(
        format!("delete {node}'s snapshot"),
        Placement::Node(node.to_string()),
        TaskKind::DeleteSnapshot { node: node.to_string() },
    )
    .retrying_until_success()
}

fn compactor_phase(compactor: &str) -> PlannedPhase {
    let tasks = COMPACTOR_PREFIXES
        .iter()
        .map(|prefix| {
            copy_task(CopyPhase::Compactor, compactor, &format!("{compactor}/{prefix}"), Vec::new())
        })
        .collect();
    PlannedPhase { name: "compactor".to_string(), tasks }
}

/// Per node: one task per data prefix, plus a catch-all for everything else under the node.
/// `compactor` is the compactor's node id (its `cs/cd/c` were copied in phase 1) or empty;
/// `catalog_under_node` is set on Core, where the catalog phase copies `<node>/catalog/`.
fn nodes_phase(
    nodes: &[String],
    compactor: &str,
    catalog_under_node: Option<&str>,
) -> PlannedPhase {
    let mut tasks = Vec::new();
    for node in nodes {
        // The node's copy tasks are the ones pushed from here to its consistency check.
        let first_copy = tasks.len() as u32;
        for prefix in NODE_DATA_PREFIXES {
            tasks.push(copy_task(CopyPhase::Nodes, node, &format!("{node}/{prefix}"), Vec::new()));
        }
        let mut exclude: Vec<ExcludeRule> = NODE_DATA_PREFIXES
            .iter()
            .map(|prefix| copied_elsewhere(&format!("{node}/{prefix}")))
            .collect();
        if node == compactor {
            exclude.extend(
                COMPACTOR_PREFIXES
                    .iter()
                    .map(|prefix| copied_elsewhere(&format!("{node}/{prefix}"))),
            );
        }
        if let Some(catalog) = catalog_under_node {
            exclude.push(copied_elsewhere(&format!("{node}/{catalog}")));
        }
        exclude.push(ExcludeRule {
            prefix: format!("{node}/{TABLE_SNAPSHOTS_PREFIX}"),
            reason: TABLE_SNAPSHOTS_REASON.to_string(),
            record: true,
        });
        let mut task = copy_task(CopyPhase::Nodes, node, &format!("{node}/"), exclude);
        task.label = format!("copy other objects under {node}/");
        tasks.push(task);
        let copies = first_copy..tasks.len() as u32;
        tasks.push(
            PlannedTask::new(
                format!(
                    "check {node} is consistent (WAL after the newest snapshot, parquet it names)"
                ),
                Placement::Node(node.clone()),
                TaskKind::CheckNodeConsistency {
                    node: node.clone(),
                    phase: CopyPhase::Nodes,
                    parts: Vec::new(), // Filled by `link_consistency_parts` once phase indices are known.
                    max_rounds: MAX_REPAIR_ROUNDS,
                },
            )
            .after(copies.collect()),
        );
    }
    PlannedPhase { name: "nodes".to_string(), tasks }
}

fn copied_elsewhere(prefix: &str) -> ExcludeRule {
    ExcludeRule {
        prefix: prefix.to_string(),
        reason: "copied by another task".to_string(),
        record: false,
    }
}

fn copy_task(phase: CopyPhase, node: &str, prefix: &str, exclude: Vec<ExcludeRule>) -> PlannedTask {
    PlannedTask::new(
        format!("copy {prefix}"),
        Placement::Node(node.to_string()),
        TaskKind::CopyPrefix { phase, node: node.to_string(), prefix: prefix.to_string(), exclude },
    )
}

/// Points each consistency check at the copy tasks it depends on.
fn link_consistency_parts(job_id: JobId, phases: &mut [PlannedPhase]) {
    for (phase, planned) in phases.iter_mut().enumerate() {
        for task in &mut planned.tasks {
            let depends_on = task.depends_on.clone();
            if let TaskKind::CheckNodeConsistency { parts, .. } = &mut task.kind {
                *parts = depends_on
                    .iter()
                    .map(|index| {
                        let slot = TaskSlot::Phase { phase: phase as u32, index: *index };
                        PartRef { task_id: TaskId { job_id, slot }, attempt: 0 }
                    })
                    .collect();
            }
        }
    }
}

fn copy_task_ids(job_id: JobId, phases: &[PlannedPhase]) -> Vec<PartRef> {
    let mut ids = Vec::new();
    // The snapshot phase copies nothing: its tasks write no staging parts.
    for (phase, planned) in
        phases.iter().enumerate().filter(|(_, planned)| planned.name != "snapshot")
    {
        for index in 0..planned.tasks.len() {
            let slot = TaskSlot::Phase { phase: phase as u32, index: index as u32 };
            ids.push(PartRef { task_id: TaskId { job_id, slot }, attempt: 0 });
        }
    }
    ids
}

#[cfg(test)]
#[path = "influxdb3_backup_test.rs"]
mod tests;
