//! Plans: a request plus a source's topology in, a [`JobSpec`] out. Pure.
//!
//! # Layout: one module per source kind and per job kind
//! - [`plan_backup`] and [`plan_restore`] check what every kind shares and dispatch on the
//!   source's kind: [`influxdb3_backup`] / [`influxdb3_restore`] (Enterprise and Core) and
//!   [`questdb`]. A third database is a new module and one arm in each, not an edit of the
//!   InfluxDB planners.
//! - [`verify`], [`prune`], [`drill`], [`keys`]: the jobs that read a repository.
//! - [`error`]: why a request cannot be planned, for every planner; [`request`]: what every
//!   planner is asked (kept apart so the planners import them, not this dispatcher).

pub mod drill;
pub mod error;
pub mod influxdb3_backup;
pub mod influxdb3_restore;
pub mod keys;
pub mod prune;
pub mod questdb;
pub mod request;
pub mod verify;

use std::collections::BTreeSet;

use bk_proto::ids::{BackupId, JobId};

use crate::core::domain::{BackupRecord, Repository, Source, SourceSpec};
use crate::core::job::JobSpec;
use questdb::QuestDbTarget;

pub use error::PlanError;
pub use request::{
    BackupOptions, NewBackup, RestoreRequest, CLUSTER_TARGET, DEFAULT_CHUNK_SIZE, MAX_REPAIR_ROUNDS,
};
pub use verify::plan_verify;

/// Plans a backup of `source` into `repository`.
///
/// # Errors
/// Returns [`PlanError::InvalidSource`] when node ids are empty, duplicated, contain `/`, or the
/// compactor is also listed as a data node.
pub fn plan_backup(
    source: &Source,
    repository: &Repository,
    job_id: JobId,
    backup_id: BackupId,
    created_at_ms: u64,
    options: &BackupOptions,
) -> Result<JobSpec, PlanError> {
    validate_source(source)?;
    let new = NewBackup { source, repository, job_id, backup_id, created_at_ms, options };
    match &source.spec {
        SourceSpec::QuestDb { node, pg_addr } => {
            Ok(questdb::backup(&new, &QuestDbTarget { node, pg_addr }))
        }
        SourceSpec::InfluxDb3Enterprise { .. } | SourceSpec::InfluxDb3Core { .. } => {
            influxdb3_backup::backup(&new)
        }
    }
}

/// Plans a restore of `backup`. `nodes_with_workers` are the nodes with a registered worker.
///
/// # Errors
/// [`PlanError`] when the backup has no recorded topology, a node has no target, both `--wipe`
/// and `--resume` are given, or a node cannot be checked as stopped and `--nodes-stopped` is
/// missing.
pub fn plan_restore(
    backup: &BackupRecord,
    repository: &Repository,
    request: &RestoreRequest,
    nodes_with_workers: &BTreeSet<String>,
) -> Result<JobSpec, PlanError> {
    let invalid = |reason: &str| PlanError::InvalidRestore {
        backup_id: backup.backup_id.to_string(),
        reason: reason.to_string(),
    };
    let spec = backup
        .source_spec
        .as_ref()
        .ok_or_else(|| invalid("the backup records no source topology"))?;
    if request.wipe && request.resume {
        return Err(invalid(
            "`--wipe` and `--resume` exclude each other: wipe starts over, resume continues",
        ));
    }
    match spec {
        SourceSpec::QuestDb { node, pg_addr } => questdb::restore(
            &QuestDbTarget { node, pg_addr },
            backup,
            repository,
            request,
            nodes_with_workers.contains(node),
        ),
        SourceSpec::InfluxDb3Enterprise { .. } | SourceSpec::InfluxDb3Core { .. } => {
            influxdb3_restore::restore(spec, backup, repository, request, nodes_with_workers)
        }
    }
}

/// Node ids every planner relies on: present, unique, without `/`.
fn validate_source(source: &Source) -> Result<(), PlanError> {
    let invalid =
        |reason: String| PlanError::InvalidSource { source_name: source.name.to_string(), reason };
    let mut ids: Vec<&str> = Vec::new();
    match &source.spec {
        SourceSpec::QuestDb { node, pg_addr } => {
            if !pg_addr.contains(':') {
                return Err(invalid(format!("`{pg_addr}` is not a `host:port` PostgreSQL wire address (QuestDB listens on 8812 by default)")));
            }
            ids.push(node);
        }
        SourceSpec::InfluxDb3Enterprise { cluster_id, compactor_node, data_nodes, .. } => {
            if data_nodes.is_empty() {
                return Err(invalid(
                    "no data node given: pass `--nodes node1,node2,…`".to_string(),
                ));
            }
            if data_nodes.contains(compactor_node) {
                return Err(invalid(format!(
                    "`{compactor_node}` is both the compactor and a data node: list it only as `--compactor`"
                )));
            }
            ids.push(cluster_id);
            ids.push(compactor_node);
            ids.extend(data_nodes.iter().map(String::as_str));
        }
        SourceSpec::InfluxDb3Core { node, .. } => ids.push(node),
    }
    let mut seen = BTreeSet::new();
    for id in ids {
        if id.is_empty() || id.contains('/') || id == "." || id == ".." {
            return Err(invalid(format!(
                "`{id}` is not a valid node or cluster id (empty, `/`, `.` or `..`)"
            )));
        }
        if !seen.insert(id) {
            return Err(invalid(format!(
                "id `{id}` is used twice: node and cluster ids must be distinct"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "restore_test.rs"]
mod restore_test;
