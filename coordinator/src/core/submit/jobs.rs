//! What a client's request proposes: each function takes the replicated state, the request as
//! the core reads it, the ids the leader drew and the time, and returns the `SubmitJob`
//! command, or why the request cannot run. The Control handlers only convert, call and
//! propose.

use std::collections::BTreeSet;

use bk_proto::ids::{BackupId, JobId};
use bk_proto::model::KeyAction;

use super::{plan_backup_request, BackupRequest};
use crate::core::domain::{BackupRecord, Repository, SourceSpec};
use crate::core::job::JobSpec;
use crate::core::plan::drill::{plan_drill, resolve_drill_target, DrillTarget};
use crate::core::plan::keys::{plan_repository_check, plan_repository_key};
use crate::core::plan::prune::{plan_prune, PruneRequest};
use crate::core::plan::{plan_restore, plan_verify, PlanError, RestoreRequest};
use crate::core::state::{ClusterState, Command};

/// Fresh ids for one submission, drawn by the leader (the core draws none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ids {
    /// The new job's id.
    pub job_id: JobId,
    /// The backup a backup job writes (other jobs write none and ignore it).
    pub backup_id: BackupId,
}

fn submit_job(spec: JobSpec, ids: Ids, now_ms: u64) -> Command {
    Command::SubmitJob { job_id: ids.job_id, spec, at_ms: now_ms }
}

/// A backup of `request.source` into `request.repository`, incremental to its parent.
///
/// # Errors
/// An unknown source or repository, or a source that cannot be planned.
pub fn backup(
    state: &ClusterState,
    request: &BackupRequest<'_>,
    ids: Ids,
    now_ms: u64,
) -> Result<Command, PlanError> {
    let spec = plan_backup_request(state, request, ids.job_id, ids.backup_id, now_ms)?;
    Ok(submit_job(spec, ids, now_ms))
}

/// A restore of backup `backup_id`. The nodes with a registered worker and the source's HTTP
/// endpoints as registered now complete the request (the topology is the backup's own).
///
/// # Errors
/// An unknown backup, its repository no longer registered, or what [`plan_restore`] refuses.
pub fn restore(
    state: &ClusterState,
    backup_id: BackupId,
    mut request: RestoreRequest,
    ids: Ids,
    now_ms: u64,
) -> Result<Command, PlanError> {
    let (backup, repository) = backup_and_repository(state, backup_id)?;
    request.http_endpoints = registered_endpoints(state, &backup.source);
    let nodes_with_workers: BTreeSet<String> = state
        .workers
        .values()
        .filter(|worker| worker.source == backup.source)
        .map(|worker| worker.node.clone())
        .collect();
    let spec = plan_restore(backup, repository, &request, &nodes_with_workers)?;
    Ok(submit_job(spec, ids, now_ms))
}

/// A verification of backup `backup_id` (`deep`: re-hash every chunk).
///
/// # Errors
/// An unknown backup or a repository no longer registered.
pub fn verify(
    state: &ClusterState,
    backup_id: BackupId,
    deep: bool,
    ids: Ids,
    now_ms: u64,
) -> Result<Command, PlanError> {
    let (backup, repository) = backup_and_repository(state, backup_id)?;
    Ok(submit_job(plan_verify(backup, repository, deep), ids, now_ms))
}

/// A restore drill of the backup `target` names.
///
/// # Errors
/// No such backup, or one that cannot be drilled.
pub fn drill(
    state: &ClusterState,
    target: &DrillTarget,
    ids: Ids,
    now_ms: u64,
) -> Result<Command, PlanError> {
    let backup_id = resolve_drill_target(state, target)?.backup_id;
    let (backup, repository) = backup_and_repository(state, backup_id)?;
    Ok(submit_job(plan_drill(backup, repository)?, ids, now_ms))
}

/// A prune of `request.source`'s backups in `repository`.
///
/// # Errors
/// An unknown repository, or keep rules that cannot be applied.
pub fn prune(
    state: &ClusterState,
    repository: &str,
    request: &PruneRequest,
    ids: Ids,
    now_ms: u64,
) -> Result<Command, PlanError> {
    let repository = registered(state, repository)?;
    let backups: Vec<&BackupRecord> = state.backups.values().collect();
    let spec = plan_prune(request, repository, &backups)?;
    Ok(submit_job(spec, ids, now_ms))
}

/// A repository-key job (add, list or remove a passphrase).
///
/// # Errors
/// An unknown repository.
pub fn key(
    state: &ClusterState,
    repository: &str,
    action: KeyAction,
    ids: Ids,
    now_ms: u64,
) -> Result<Command, PlanError> {
    let spec = plan_repository_key(registered(state, repository)?, action);
    Ok(submit_job(spec, ids, now_ms))
}

/// A repository check, reading `read_data_percent` % of the packs whole.
///
/// # Errors
/// An unknown repository, or a percentage over 100.
pub fn check(
    state: &ClusterState,
    repository: &str,
    read_data_percent: u32,
    ids: Ids,
    now_ms: u64,
) -> Result<Command, PlanError> {
    if read_data_percent > 100 {
        return Err(PlanError::InvalidCheck(format!(
            "--read-data {read_data_percent}: a percentage of the packs, 0 to 100"
        )));
    }
    let repository = registered(state, repository)?;
    let spec = plan_repository_check(repository, read_data_percent);
    Ok(submit_job(spec, ids, now_ms))
}

fn registered<'a>(state: &'a ClusterState, name: &str) -> Result<&'a Repository, PlanError> {
    state.repositories.get(name).ok_or_else(|| PlanError::UnknownRepository(name.to_string()))
}

fn backup_and_repository(
    state: &ClusterState,
    backup_id: BackupId,
) -> Result<(&BackupRecord, &Repository), PlanError> {
    let backup = state.backups.get(&backup_id).ok_or(PlanError::UnknownBackup(backup_id))?;
    let repository = registered(state, &backup.repository)?;
    Ok((backup, repository))
}

/// The HTTP endpoints of the source as registered now.
fn registered_endpoints(
    state: &ClusterState,
    source: &str,
) -> std::collections::BTreeMap<String, String> {
    match state.sources.get(source).map(|source| &source.spec) {
        Some(SourceSpec::InfluxDb3Enterprise { http_endpoints, .. }) => http_endpoints.clone(),
        Some(SourceSpec::InfluxDb3Core { node, http_endpoint: Some(endpoint) }) => {
            [(node.clone(), endpoint.clone())].into()
        }
        _ => Default::default(),
    }
}

#[cfg(test)]
#[path = "jobs_test.rs"]
mod tests;
