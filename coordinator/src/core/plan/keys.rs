//! Repository jobs that concern no backup (keys, checks): one task, on a worker holding a
//! passphrase for the repository. Pure.

use bk_proto::ids::SourceName;
use bk_proto::model::{KeyAction, TaskKind};

use crate::core::domain::Repository;
use crate::core::job::{JobKind, JobSpec, Placement, PlannedPhase, PlannedTask};

/// Plans a key action on `repository`.
pub fn plan_repository_key(repository: &Repository, action: KeyAction) -> JobSpec {
    let label = match &action {
        KeyAction::Add { new_password_file } => {
            format!(
                "add a key to `{}` with the passphrase in `{new_password_file}`",
                repository.name
            )
        }
        KeyAction::List => format!("list the keys of `{}`", repository.name),
        KeyAction::Remove { key_id } => format!("remove key {key_id} of `{}`", repository.name),
    };
    JobSpec {
        kind: JobKind::RepositoryKey,
        backup_id: None,
        parent: None,
        scheduled: None,
        source: SourceName::default(),
        source_spec: None,
        repository: repository.clone(),
        nodes: Vec::new(),
        phases: vec![PlannedPhase {
            name: "key".to_string(),
            tasks: vec![PlannedTask::new(
                label,
                Placement::RepositoryHolder(repository.name.clone()),
                TaskKind::RepositoryKey { action },
            )],
        }],
        cleanup: Vec::new(),
        allow_corrupt: false,
    }
}

/// Plans a check of `repository` reading `read_data_percent` of its packs whole.
pub fn plan_repository_check(repository: &Repository, read_data_percent: u32) -> JobSpec {
    let mut spec = plan_repository_key(repository, KeyAction::List);
    spec.kind = JobKind::Check;
    spec.phases = vec![PlannedPhase {
        name: "check".to_string(),
        tasks: vec![PlannedTask::new(format!(
                "check `{}`: indexes, pack headers, every backup's blobs; {read_data_percent}% of the data",
                repository.name
            ), Placement::RepositoryHolder(repository.name.clone()), TaskKind::CheckRepository { read_data_percent })],
    }];
    spec
}
