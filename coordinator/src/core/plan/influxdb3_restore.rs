//! InfluxDB 3 restore plans. Pure.
//!
//! Restore runs the backup's stages in reverse, after guards that write nothing:
//! 1. `preflight`: per node (and the cluster's catalog prefixes), the node is stopped (its HTTP
//!    endpoint refuses connections) and the target prefixes are empty unless `--wipe`/`--resume`;
//!    the manifest, its segments and every chunk exist.
//! 2. `wipe` (only with `--wipe`): delete exactly the prefixes the restore writes.
//! 3. `catalog` (+ `enterprise`) → 4. `licence` → 5. `nodes` (each node's objects on that node's
//!    worker, any worker when the node has none yet) → 6. `compactor` (`cs`, `cd`, `c`).

use std::collections::{BTreeMap, BTreeSet};

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
    let planner = Planner { backup, request, nodes_with_workers };
    let topology = planner.topology(spec)?;
    let unchecked: Vec<&str> = topology
        .nodes
        .iter()
        .filter(|node| !topology.endpoints.contains_key(*node))
        .map(String::as_str)
        .collect();
    if !unchecked.is_empty() && !request.nodes_stopped {
        return Err(planner.invalid(format!(
            "node(s) `{}` have no HTTP endpoint registered, so bk cannot check they are stopped: stop every node \
             and pass `--nodes-stopped`, or register endpoints with `bkctl source add … --http NODE=URL`",
            unchecked.join("`, `")
        )));
    }
    let node_targets: Vec<(String, String)> = topology
        .nodes
        .iter()
        .map(|node| Ok::<_, PlanError>((node.clone(), planner.target_of(node)?)))
        .collect::<Result<_, _>>()?;
    let (preflight, wipe) = planner.guards(&topology, &node_targets);
    let mut phases = vec![PlannedPhase { name: "preflight".to_string(), tasks: preflight }];
    if request.wipe {
        phases.push(PlannedPhase { name: "wipe".to_string(), tasks: wipe });
    }
    phases.extend(planner.copy_phases(&topology, &node_targets)?);
    Ok(JobSpec {
        nodes: topology.nodes,
        ..JobSpec::reading_backup(JobKind::Restore, backup, repository, phases)
    })
}

/// The restored cluster's shape, from the topology the backup recorded.
struct Topology {
    /// Every node (data nodes, then the compactor).
    nodes: Vec<String>,
    /// The cluster-level keys (catalog, licence files) that must be free.
    cluster_prefixes: Vec<String>,
    /// Where the cluster-level objects go (Enterprise only).
    cluster_target: Option<String>,
    compactor: Option<String>,
    /// HTTP endpoints by node: recorded, plus those registered now.
    endpoints: BTreeMap<String, String>,
}

/// What every part of the plan needs.
struct Planner<'a> {
    backup: &'a BackupRecord,
    request: &'a RestoreRequest,
    nodes_with_workers: &'a BTreeSet<String>,
}

impl Planner<'_> {
    fn invalid(&self, reason: String) -> PlanError {
        PlanError::InvalidRestore { backup_id: self.backup.backup_id.to_string(), reason }
    }

    /// The target of a node (or of [`CLUSTER_TARGET`]): its own, else the default.
    fn target_of(&self, key: &str) -> Result<String, PlanError> {
        let request = self.request;
        request.node_targets.get(key).or(request.default_target.as_ref()).cloned().ok_or_else(|| {
            self.invalid(format!("no target for `{key}`: pass `--target URL` (all nodes) or `--target {key}=URL`"))
        })
    }

    /// On the node's own worker, or any worker when the node has none (yet).
    fn placement(&self, node: &str) -> Placement {
        if self.nodes_with_workers.contains(node) {
            Placement::Node(node.to_string())
        } else {
            Placement::AnyNode
        }
    }

    fn topology(&self, spec: &SourceSpec) -> Result<Topology, PlanError> {
        let mut topology = match spec {
            SourceSpec::QuestDb { .. } => {
                return Err(
                    self.invalid("a QuestDB backup is restored by the QuestDB planner".to_string())
                )
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
                Topology {
                    nodes,
                    cluster_prefixes: prefixes,
                    cluster_target: Some(self.target_of(CLUSTER_TARGET)?),
                    compactor: Some(compactor_node.clone()),
                    endpoints: http_endpoints.clone(),
                }
            }
            SourceSpec::InfluxDb3Core { node, http_endpoint } => Topology {
                nodes: vec![node.clone()],
                cluster_prefixes: Vec::new(),
                cluster_target: None,
                compactor: None,
                endpoints: http_endpoint
                    .iter()
                    .map(|endpoint| (node.clone(), endpoint.clone()))
                    .collect(),
            },
        };
        topology.endpoints.extend(self.request.http_endpoints.clone());
        Ok(topology)
    }

    /// The preflight checks (nodes stopped, targets free, the backup whole) and the wipe tasks.
    fn guards(
        &self,
        topology: &Topology,
        node_targets: &[(String, String)],
    ) -> (Vec<PlannedTask>, Vec<PlannedTask>) {
        let allow_existing = self.request.wipe || self.request.resume;
        let mut preflight = Vec::new();
        let mut wipe = Vec::new();
        for (node, target_url) in node_targets {
            preflight.push(PlannedTask::new(
                format!("check {node} is stopped and {node}/ is empty"),
                self.placement(node),
                TaskKind::CheckRestoreTarget {
                    node: node.clone(),
                    target_url: target_url.clone(),
                    prefixes: vec![format!("{node}/")],
                    http_endpoint: topology.endpoints.get(node).cloned(),
                    allow_existing,
                },
            ));
            wipe.push(wipe_task(target_url, vec![format!("{node}/")], self.placement(node)));
        }
        if let Some(target_url) = &topology.cluster_target {
            preflight.push(PlannedTask::new(
                "check the cluster's catalog and licence keys are free".to_string(),
                Placement::AnyNode,
                TaskKind::CheckRestoreTarget {
                    node: String::new(),
                    target_url: target_url.clone(),
                    prefixes: topology.cluster_prefixes.clone(),
                    http_endpoint: None,
                    allow_existing,
                },
            ));
            wipe.push(wipe_task(target_url, topology.cluster_prefixes.clone(), Placement::AnyNode));
        }
        preflight.push(PlannedTask::new(
            format!("check backup {} and its chunks exist", self.backup.backup_id),
            Placement::AnyNode,
            TaskKind::VerifyBackup { backup_id: self.backup.backup_id, deep: false },
        ));
        (preflight, wipe)
    }

    /// The copy stages in reverse backup order: catalog, licence, nodes, compactor.
    fn copy_phases(
        &self,
        topology: &Topology,
        node_targets: &[(String, String)],
    ) -> Result<Vec<PlannedPhase>, PlanError> {
        let catalog_target =
            topology.cluster_target.clone().unwrap_or_else(|| node_targets[0].1.clone());
        let mut phases = vec![PlannedPhase {
            name: "catalog".to_string(),
            tasks: vec![self.restore_task(
                CopyPhase::Catalog,
                None,
                &catalog_target,
                Placement::AnyNode,
            )],
        }];
        if self.backup.phases.iter().any(|phase| phase.name == CopyPhase::Licence.as_str()) {
            phases.push(PlannedPhase {
                name: "licence".to_string(),
                tasks: vec![self.restore_task(
                    CopyPhase::Licence,
                    None,
                    &catalog_target,
                    Placement::AnyNode,
                )],
            });
        }
        let node_tasks = node_targets
            .iter()
            .map(|(node, target)| {
                self.restore_task(CopyPhase::Nodes, Some(node), target, self.placement(node))
            })
            .collect();
        phases.push(PlannedPhase { name: "nodes".to_string(), tasks: node_tasks });
        if let Some(compactor) = &topology.compactor {
            let target = self.target_of(compactor)?;
            let placement = self.placement(compactor);
            let task = self.restore_task(CopyPhase::Compactor, Some(compactor), &target, placement);
            phases.push(PlannedPhase { name: "compactor".to_string(), tasks: vec![task] });
        }
        Ok(phases)
    }

    fn restore_task(
        &self,
        phase: CopyPhase,
        node: Option<&str>,
        target_url: &str,
        placement: Placement,
    ) -> PlannedTask {
        PlannedTask::new(
            match node {
                Some(node) => format!("restore {phase} objects of {node}"),
                None => format!("restore {phase} objects"),
            },
            placement,
            TaskKind::RestoreObjects {
                backup_id: self.backup.backup_id,
                target_url: target_url.to_string(),
                phase,
                node: node.map(str::to_string),
            },
        )
    }
}

fn wipe_task(target_url: &str, prefixes: Vec<String>, placement: Placement) -> PlannedTask {
    PlannedTask::new(
        format!("wipe {}", prefixes.first().map(String::as_str).unwrap_or("")),
        placement,
        TaskKind::WipeTarget { target_url: target_url.to_string(), prefixes },
    )
}
