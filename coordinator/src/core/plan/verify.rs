//! Verify plans. Pure.

use bk_proto::model::TaskKind;

use crate::core::domain::{BackupRecord, Repository};
use crate::core::job::{JobKind, JobSpec, Placement, PlannedPhase, PlannedTask};

/// Plans a verification of `backup`: one task (the manifest is read once), on any worker of
/// the backup's source.
pub fn plan_verify(backup: &BackupRecord, repository: &Repository, deep: bool) -> JobSpec {
    let depth = if deep { "re-hash every chunk" } else { "check every chunk exists" };
    let phases = vec![PlannedPhase {
        name: "verify".to_string(),
        tasks: vec![PlannedTask::new(
            format!("verify backup {}: {depth}", backup.backup_id),
            Placement::AnyNode,
            TaskKind::VerifyBackup { backup_id: backup.backup_id, deep },
        )],
    }];
    JobSpec::reading_backup(JobKind::Verify, backup, repository, phases)
}
