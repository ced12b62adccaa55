//! InfluxDB 3 restore plans. Pure.
//!
//! Restore runs the backup's stages in reverse, after guards that write nothing:
//! 1. `preflight`: per node (and the cluster's catalog prefixes), the node is stopped (its HTTP
//!    endpoint refuses connections) and the target prefixes are empty unless `--wipe`/`--resume`;
//!    the manifest, its segments and every chunk exist.
//! 2. `wipe` (only with `--wipe`): delete exactly the prefixes the restore writes.
//! 3. `catalog` (+ `enterprise`) → 4. `licence` → 5. `nodes` (each node's objects on that node's
//!    worker, any worker when the node has none yet) → 6. `compactor` (`cs`, `cd`, `c`).

use std::collections::BTreeSet;

use bk_proto::model::{CopyPhase, TaskKind};

use bk_proto::influxdb3_layout::{CATALOG_KEYS, LICENCE_FILES};

use super::error::PlanError;
use super::request::{RestoreRequest, CLUSTER_TARGET};
use crate::core::domain::{BackupRecord, Repository, SourceSpec};
use crate::core::job::{JobKind, JobSpec, Placement, PlannedPhase, PlannedTask};

/// Plans a restore of an InfluxDB 3 backup whose recorded topology is `spec` (the caller has
/// checked the request and dispatched by kind).
pub(super) fn restore(
    spec: &SourceSpec,
    backup: &BackupRecord,
    repository: &Repository,
    request: &RestoreRequest,
    nodes_with_workers: &BTreeSet<String>,
) -> Result<JobSpec, PlanError> {
    let invalid = |reason: String| PlanError::InvalidRestore {
        backup_id: backup.backup_id.to_string(),
        reason,
    };
    let target_of = |key: &str| {
        request.node_targets.get(key).or(request.default_target.as_ref()).cloned().ok_or_else(|| {
            invalid(format!("no target for `{key}`: pass `--target URL` (all nodes) or `--target {key}=URL`"))
        })
    };
    let placement = |node: &str| {
        if nodes_with_workers.contains(node) {
            Placement::Node(node.to_string())
        } else {
            Placement::AnyNode
        }
    };
    let (nodes, cluster_prefixes, cluster_target, compactor, mut endpoints) = match spec {
        SourceSpec::QuestDb { .. } => {
            return Err(invalid("a QuestDB backup is restored by the QuestDB planner".to_string()))
        }
        SourceSpec::InfluxDb3Enterprise {
            cluster_id,
            compactor_node,
            data_nodes,
            http_endpoints,
        } => {
            let mut prefixes: Vec<String> =
                CATALOG_KEYS.iter().map(|key| format!("{cluster_id}/{key}")).collect();
            prefixes.extend(LICENCE_FILES.iter().map(|key| format!("{cluster_id}/{key}")));
            let mut nodes = data_nodes.clone();
            nodes.push(compactor_node.clone());
            (
                nodes,
                prefixes,
                Some(target_of(CLUSTER_TARGET)?),
                Some(compactor_node.clone()),
                http_endpoints.clone(),
            )
        }
        SourceSpec::InfluxDb3Core { node, http_endpoint } => {
            let endpoints =
                http_endpoint.iter().map(|endpoint| (node.clone(), endpoint.clone())).collect();
            (vec![node.clone()], Vec::new(), None, None, endpoints)
        }
    };
    endpoints.extend(request.http_endpoints.clone());
    let unchecked: Vec<&str> =
        nodes.iter().filter(|node| !endpoints.contains_key(*node)).map(String::as_str).collect();
    if !unchecked.is_empty() && !request.nodes_stopped {
        return Err(invalid(format!(
            "node(s) `{}` have no HTTP endpoint registered, so bk cannot check they are stopped: stop every node \
             and pass `--nodes-stopped`, or register endpoints with `bkctl source add … --http NODE=URL`",
            unchecked.join("`, `")
        )));
    }
    let node_targets: Vec<(String, String)> = nodes
        .iter()
        .map(|node| Ok::<_, PlanError>((node.clone(), target_of(node)?)))
        .collect::<Result<_, _>>()?;
    let catalog_target = cluster_target.clone().unwrap_or_else(|| node_targets[0].1.clone());

    let mut preflight = Vec::new();
    let mut wipe = Vec::new();
    for (node, target_url) in &node_targets {
        preflight.push(PlannedTask::new(
            format!("check {node} is stopped and {node}/ is empty"),
            placement(node),
            TaskKind::CheckRestoreTarget {
                node: node.clone(),
                target_url: target_url.clone(),
                prefixes: vec![format!("{node}/")],
                http_endpoint: endpoints.get(node).cloned(),
                allow_existing: request.wipe || request.resume,
            },
        ));
        wipe.push(wipe_task(target_url, vec![format!("{node}/")], placement(node)));
    }
    if let Some(target_url) = &cluster_target {
        preflight.push(PlannedTask::new(
            "check the cluster's catalog and licence keys are free".to_string(),
            Placement::AnyNode,
            TaskKind::CheckRestoreTarget {
                node: String::new(),
                target_url: target_url.clone(),
                prefixes: cluster_prefixes.clone(),
                http_endpoint: None,
                allow_existing: request.wipe || request.resume,
            },
        ));
        wipe.push(wipe_task(target_url, cluster_prefixes, Placement::AnyNode));
    }
    preflight.push(PlannedTask::new(
        format!("check backup {} and its chunks exist", backup.backup_id),
        Placement::AnyNode,
        TaskKind::VerifyBackup { backup_id: backup.backup_id, deep: false },
    ));

    let restore = |phase: CopyPhase, node: Option<&str>, target_url: &str, placement: Placement| {
        PlannedTask::new(
            match node {
                Some(node) => format!("restore {phase} objects of {node}"),
                None => format!("restore {phase} objects"),
            },
            placement,
            TaskKind::RestoreObjects {
                backup_id: backup.backup_id,
                target_url: target_url.to_string(),
                phase,
                node: node.map(str::to_string),
            },
        )
    };
    let mut phases = vec![PlannedPhase { name: "preflight".to_string(), tasks: preflight }];
    if request.wipe {
        phases.push(PlannedPhase { name: "wipe".to_string(), tasks: wipe });
    }
    phases.push(PlannedPhase {
        name: "catalog".to_string(),
        tasks: vec![restore(CopyPhase::Catalog, None, &catalog_target, Placement::AnyNode)],
    });
    if backup.phases.iter().any(|phase| phase.name == CopyPhase::Licence.as_str()) {
        phases.push(PlannedPhase {
            name: "licence".to_string(),
            tasks: vec![restore(CopyPhase::Licence, None, &catalog_target, Placement::AnyNode)],
        });
    }
    let node_tasks = node_targets
        .iter()
        .map(|(node, target)| restore(CopyPhase::Nodes, Some(node), target, placement(node)))
        .collect();
    phases.push(PlannedPhase { name: "nodes".to_string(), tasks: node_tasks });
    if let Some(compactor) = compactor {
        let target = target_of(&compactor)?;
        let task = restore(CopyPhase::Compactor, Some(&compactor), &target, placement(&compactor));
        phases.push(PlannedPhase { name: "compactor".to_string(), tasks: vec![task] });
    }
    Ok(JobSpec { nodes, ..JobSpec::reading_backup(JobKind::Restore, backup, repository, phases) })
}

fn wipe_task(target_url: &str, prefixes: Vec<String>, placement: Placement) -> PlannedTask {
    PlannedTask::new(
        format!("wipe {}", prefixes.first().map(String::as_str).unwrap_or("")),
        placement,
        TaskKind::WipeTarget { target_url: target_url.to_string(), prefixes },
    )
}
