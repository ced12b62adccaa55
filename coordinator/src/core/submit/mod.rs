//! Requests against the current state, into the commands that submit their jobs. Pure (the
//! caller supplies the ids and the time). [`jobs`] has one function per job kind; this module
//! says which backup a new one is incremental to.

pub mod jobs;
pub mod schedule;

use bk_proto::ids::{BackupId, JobId};

use super::job::JobSpec;
use super::plan::{plan_backup, BackupOptions, PlanError};
use super::state::ClusterState;

/// What a backup is asked for (by a client or a schedule).
#[derive(Clone, Copy, Debug)]
pub struct BackupRequest<'a> {
    /// The source's name.
    pub source: &'a str,
    /// The repository's name.
    pub repository: &'a str,
    /// Copy everything, reusing nothing from an earlier backup.
    pub full: bool,
    /// QuestDB: take over a checkpoint someone else holds.
    pub adopt_checkpoint: bool,
    /// Commit even if source objects fail their format check.
    pub allow_corrupt: bool,
}

/// The backup a new one of `source` into `repository` is incremental to: the newest committed
/// one of the same source in the same repository (ties broken by id, so every replica agrees).
pub fn parent_backup(state: &ClusterState, source: &str, repository: &str) -> Option<BackupId> {
    state
        .backups
        .values()
        .filter(|backup| backup.source == source && backup.repository == repository)
        .max_by_key(|backup| (backup.created_at_ms, backup.backup_id))
        .map(|backup| backup.backup_id)
}

/// Plans `request` as job `job_id` writing backup `backup_id`: incremental to
/// [`parent_backup`] unless `full`.
///
/// # Errors
/// [`PlanError::UnknownSource`] / [`PlanError::UnknownRepository`] for names not registered,
/// and whatever [`plan_backup`] refuses.
pub fn plan_backup_request(
    state: &ClusterState,
    request: &BackupRequest<'_>,
    job_id: JobId,
    backup_id: BackupId,
    at_ms: u64,
) -> Result<JobSpec, PlanError> {
    let source = state
        .sources
        .get(request.source)
        .ok_or_else(|| PlanError::UnknownSource(request.source.to_string()))?;
    let repository = state
        .repositories
        .get(request.repository)
        .ok_or_else(|| PlanError::UnknownRepository(request.repository.to_string()))?;
    let parent =
        if request.full { None } else { parent_backup(state, request.source, request.repository) };
    let mut snapshot_nodes: Vec<String> = state
        .workers
        .values()
        .filter(|worker| worker.source == source.name && worker.snapshots)
        .map(|worker| worker.node.clone())
        .collect();
    snapshot_nodes.sort();
    snapshot_nodes.dedup();
    let options = BackupOptions {
        adopt_checkpoint: request.adopt_checkpoint,
        parent,
        allow_corrupt: request.allow_corrupt,
        snapshot_nodes,
    };
    plan_backup(source, repository, job_id, backup_id, at_ms, &options)
}

#[cfg(test)]
mod tests {
    use bk_proto::model::RepositoryRef;
    use ulid::Ulid;

    use super::*;
    use crate::core::domain::{BackupRecord, Source, SourceSpec};

    fn backup(n: u128, source: &str, repository: &str, created_at_ms: u64) -> BackupRecord {
        let mut record =
            BackupRecord::fixture(BackupId(Ulid::from_parts(1, n)), source, created_at_ms, None);
        record.repository = repository.to_string();
        record
    }

    fn state() -> ClusterState {
        let mut state = ClusterState::default();
        let spec = SourceSpec::InfluxDb3Core { node: "node1".to_string(), http_endpoint: None };
        state.sources.insert("src".into(), Source { name: "src".into(), spec });
        state
            .repositories
            .insert("repo".to_string(), RepositoryRef::new("repo", "file:///r", 1024));
        for record in [
            backup(1, "src", "repo", 100),
            backup(2, "src", "repo", 300),
            backup(3, "src", "repo", 300), // Same time: the higher id wins.
            backup(4, "src", "other", 900),
            backup(5, "other", "repo", 900),
        ] {
            state.backups.insert(record.backup_id, record);
        }
        state
    }

    #[test]
    fn test_the_parent_is_the_newest_backup_of_the_same_source_and_repository() {
        let state = state();
        let cases = [
            ("src", "repo", Some(BackupId(Ulid::from_parts(1, 3)))),
            ("src", "other", Some(BackupId(Ulid::from_parts(1, 4)))),
            ("src", "nowhere", None),
            ("nobody", "repo", None),
        ];
        for (source, repository, want) in cases {
            assert_eq!(parent_backup(&state, source, repository), want, "{source} in {repository}");
        }
    }

    #[test]
    fn test_a_request_is_planned_incremental_unless_full_and_unknown_names_are_refused() {
        let state = state();
        let request = BackupRequest {
            source: "src",
            repository: "repo",
            full: false,
            adopt_checkpoint: false,
            allow_corrupt: false,
        };
        let ids = (JobId(Ulid::from_parts(9, 0)), BackupId(Ulid::from_parts(9, 1)));
        let plan =
            |request: &BackupRequest<'_>| plan_backup_request(&state, request, ids.0, ids.1, 5);
        assert_eq!(plan(&request).unwrap().parent, Some(BackupId(Ulid::from_parts(1, 3))));
        assert_eq!(plan(&BackupRequest { full: true, ..request }).unwrap().parent, None);
        let unknown_source = plan(&BackupRequest { source: "nope", ..request }).unwrap_err();
        assert!(unknown_source.to_string().contains("bkctl source add"), "{unknown_source}");
        let unknown_repository =
            plan(&BackupRequest { repository: "nope", ..request }).unwrap_err();
        assert!(unknown_repository.to_string().contains("bkctl repo add"), "{unknown_repository}");
    }
}
