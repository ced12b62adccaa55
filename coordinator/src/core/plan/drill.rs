//! Plans a restore drill. Pure.
//!
//! One task, on one worker of the backup's source that has scratch space (`[drill]`): the
//! restore, the offline checks, the start of the database and its questions all need the same
//! local directory, so they cannot be spread over workers. The task wipes its scratch before
//! and after, so a drill cut short by a crash leaves nothing that the next one trips over.

use bk_proto::ids::SourceName;
use bk_proto::model::{DrillDatabase, TaskKind};

use super::error::PlanError;
use crate::core::domain::{BackupRecord, Repository, SourceSpec};
use crate::core::job::{JobKind, JobSpec, Placement, PlannedPhase, PlannedTask};
use crate::core::state::ClusterState;

/// Which backup to drill.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DrillTarget {
    /// This one.
    Backup(bk_proto::ids::BackupId),
    /// The newest backup of a source, in one repository or any.
    NewestOf {
        /// The source.
        source: SourceName,
        /// Only backups in this repository.
        repository: Option<String>,
    },
}

/// The backup `target` names.
///
/// # Errors
/// [`PlanError::UnknownSource`] / [`PlanError::UnknownRepository`] for names not registered,
/// [`PlanError::InvalidDrill`] when there is no such backup, saying how to find one.
pub fn resolve_drill_target<'a>(
    state: &'a ClusterState,
    target: &DrillTarget,
) -> Result<&'a BackupRecord, PlanError> {
    match target {
        DrillTarget::Backup(backup_id) => state.backups.get(backup_id).ok_or_else(|| {
            PlanError::InvalidDrill(format!(
                "backup `{backup_id}` not found: list them with `bkctl backups`"
            ))
        }),
        DrillTarget::NewestOf { source, .. } if !state.sources.contains_key(source.as_str()) => {
            Err(PlanError::UnknownSource(source.to_string()))
        }
        DrillTarget::NewestOf { repository: Some(name), .. }
            if !state.repositories.contains_key(name) =>
        {
            Err(PlanError::UnknownRepository(name.clone()))
        }
        DrillTarget::NewestOf { source, repository } => state
            .backups
            .values()
            .filter(|backup| backup.source == *source)
            .filter(|backup| repository.as_ref().is_none_or(|name| backup.repository == *name))
            .max_by_key(|backup| (backup.created_at_ms, backup.backup_id))
            .ok_or_else(|| {
                let place = repository
                    .as_ref()
                    .map(|name| format!(" in repository `{name}`"))
                    .unwrap_or_default();
                PlanError::InvalidDrill(format!(
                    "source `{source}` has no committed backup{place} to drill: run `bkctl submit backup` first"
                ))
            }),
    }
}

/// Plans a drill of `backup`.
///
/// # Errors
/// [`PlanError::InvalidDrill`] when the backup records no topology (nothing to start).
pub fn plan_drill(backup: &BackupRecord, repository: &Repository) -> Result<JobSpec, PlanError> {
    let spec = backup.source_spec.clone().ok_or_else(|| {
        PlanError::InvalidDrill(format!(
            "backup `{}` records no source topology, so bk cannot tell which database to start",
            backup.backup_id
        ))
    })?;
    let database = match &spec {
        SourceSpec::InfluxDb3Core { node, .. } => DrillDatabase::InfluxDb3 {
            nodes: vec![node.clone()],
            serve_node: node.clone(),
            cluster_id: None,
            retention_deleted: retention_deleted(backup),
        },
        SourceSpec::InfluxDb3Enterprise { cluster_id, compactor_node, data_nodes, .. } => {
            let mut nodes = data_nodes.clone();
            nodes.push(compactor_node.clone());
            DrillDatabase::InfluxDb3 {
                serve_node: data_nodes.first().unwrap_or(compactor_node).clone(),
                nodes,
                cluster_id: Some(cluster_id.clone()),
                retention_deleted: retention_deleted(backup),
            }
        }
        SourceSpec::QuestDb { .. } => DrillDatabase::QuestDb,
    };
    let phases = vec![PlannedPhase {
        name: "drill".to_string(),
        tasks: vec![PlannedTask::new(
            format!(
                "drill backup {}: restore into scratch, check, start the database",
                backup.backup_id
            ),
            Placement::DrillWorker,
            TaskKind::DrillBackup { backup_id: backup.backup_id, database },
        )],
    }];
    Ok(JobSpec::reading_backup(JobKind::Drill, backup, repository, phases))
}

/// The parquet files the backup's consistency checks found deleted by retention.
fn retention_deleted(backup: &BackupRecord) -> Vec<String> {
    backup.consistency.iter().flat_map(|point| point.retention_deleted.iter().cloned()).collect()
}

#[cfg(test)]
mod tests {
    use bk_proto::ids::BackupId;
    use ulid::Ulid;

    use super::*;

    fn backup(n: u128, repository: &str, at_ms: u64, spec: Option<SourceSpec>) -> BackupRecord {
        let mut record =
            BackupRecord::fixture(BackupId(Ulid::from_parts(1, n)), "src", at_ms, spec);
        record.repository = repository.to_string();
        record
    }

    #[test]
    fn test_the_newest_backup_of_a_source_is_drilled_and_missing_ones_say_what_to_do() {
        let mut state = ClusterState::default();
        let spec = SourceSpec::InfluxDb3Core { node: "n".into(), http_endpoint: None };
        let source = crate::core::domain::Source { name: "src".into(), spec };
        state.sources.insert("src".into(), source);
        for name in ["a", "b", "c"] {
            state.repositories.insert(name.into(), Repository::new(name, "file:///r", 1));
        }
        for record in
            [backup(1, "a", 100, None), backup(2, "a", 300, None), backup(3, "b", 200, None)]
        {
            state.backups.insert(record.backup_id, record);
        }
        let newest = |repository: Option<&str>| {
            let target = DrillTarget::NewestOf {
                source: "src".into(),
                repository: repository.map(str::to_string),
            };
            resolve_drill_target(&state, &target).map(|backup| backup.backup_id)
        };
        assert_eq!(newest(None).unwrap(), BackupId(Ulid::from_parts(1, 2)));
        assert_eq!(newest(Some("b")).unwrap(), BackupId(Ulid::from_parts(1, 3)));
        let none = newest(Some("c")).unwrap_err().to_string();
        assert!(none.contains("no committed backup in repository `c`"), "{none}");
        let unregistered = newest(Some("zzz")).unwrap_err().to_string();
        assert!(unregistered.contains("unknown repository `zzz`"), "{unregistered}");
        let target = DrillTarget::NewestOf { source: "nope".into(), repository: None };
        let unknown = resolve_drill_target(&state, &target).unwrap_err().to_string();
        assert!(unknown.contains("unknown source `nope`: register it"), "{unknown}");
        let unknown = DrillTarget::Backup(BackupId(Ulid::from_parts(9, 9)));
        let error = resolve_drill_target(&state, &unknown).unwrap_err().to_string();
        assert!(error.contains("bkctl backups"), "{error}");
    }

    #[test]
    fn test_an_enterprise_drill_serves_the_first_data_node_with_the_cluster_id() {
        let spec = SourceSpec::InfluxDb3Enterprise {
            cluster_id: "c1".into(),
            compactor_node: "compactor".into(),
            data_nodes: vec!["node1".into(), "node2".into()],
            http_endpoints: Default::default(),
        };
        let record = backup(1, "a", 1, Some(spec));
        let plan = plan_drill(&record, &Repository::new("a", "file:///r", 1 << 20)).unwrap();
        let task = &plan.phases[0].tasks[0];
        assert_eq!(task.placement, Placement::DrillWorker);
        let TaskKind::DrillBackup { database, .. } = &task.kind else { panic!("{task:?}") };
        assert_eq!(
            *database,
            DrillDatabase::InfluxDb3 {
                nodes: vec!["node1".into(), "node2".into(), "compactor".into()],
                serve_node: "node1".into(),
                cluster_id: Some("c1".into()),
                retention_deleted: Vec::new(),
            }
        );
        let error = plan_drill(&backup(2, "a", 1, None), &Repository::new("a", "file:///r", 1))
            .unwrap_err();
        assert!(error.to_string().contains("records no source topology"), "{error}");
    }
}
