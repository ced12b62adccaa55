//! The replicated state's size after many jobs, with and without the job history: hourly
//! backups of a cluster, each run to success through the coordinator's own core (the same
//! `ClusterState::apply` every replica runs), the leader's history commands applied between
//! them as it would (finished jobs past the newest few compacted, those past the history
//! forgotten), then encoded as a snapshot is (JSON). Without the history, the state would hold
//! every job whole: that size is the newest job's times the jobs.

use std::collections::BTreeMap;

use bk_coordinator::core::domain::{Source, SourceSpec};
use bk_coordinator::core::job::history::{jobs_to_compact, jobs_to_forget, JobHistory};
use bk_coordinator::core::plan::{plan_backup, BackupOptions};
use bk_coordinator::core::{ClusterState, Command, CommandResponse, JobEvent, Repository};
use bk_proto::ids::{BackupId, JobId, TaskId};
use bk_proto::model::{TaskReport, TransferStats};
use ulid::Ulid;

const HOUR_MS: u64 = 3_600_000;

/// What the measurement found.
pub(crate) struct HistorySize {
    pub(crate) jobs: usize,
    pub(crate) state_bytes: usize,
    pub(crate) kept_jobs: usize,
    pub(crate) compacted_state_bytes: usize,
    pub(crate) backups: usize,
}

/// Runs `jobs` hourly backups of a `nodes`-node cluster to success under the default job
/// history.
pub(crate) fn measure(jobs: u64, nodes: usize) -> anyhow::Result<HistorySize> {
    let mut state = ClusterState::default();
    let source = Source {
        name: "prod".into(),
        spec: SourceSpec::InfluxDb3Enterprise {
            cluster_id: "cluster1".to_string(),
            compactor_node: "compactor".to_string(),
            data_nodes: (1..=nodes).map(|n| format!("node{n}")).collect(),
            http_endpoints: BTreeMap::new(),
        },
    };
    let repository = Repository::new("main", "s3://backups/prod", 8 << 20);
    applied(&mut state, Command::PutSource(source.clone()))?;
    applied(&mut state, Command::PutRepository(repository.clone()))?;
    let history = JobHistory::default();
    let mut job_bytes = 0;
    for n in 1..=jobs {
        let at_ms = n * HOUR_MS;
        let job_id = JobId(Ulid::from_parts(at_ms, u128::from(n)));
        let options = BackupOptions { parent: None, ..BackupOptions::default() };
        let spec = plan_backup(&source, &repository, job_id, BackupId(job_id.0), at_ms, &options)?;
        applied(&mut state, Command::SubmitJob { job_id, spec, at_ms })?;
        run_to_end(&mut state, job_id, at_ms)?;
        job_bytes = serde_json::to_vec(&state.jobs[&job_id])?.len();
        let job_ids = jobs_to_compact(&state, &history);
        applied(&mut state, Command::CompactJobs { job_ids })?;
        let job_ids = jobs_to_forget(&state, at_ms + HOUR_MS, &history);
        applied(&mut state, Command::ForgetJobs { job_ids })?;
    }
    Ok(HistorySize {
        jobs: jobs as usize,
        state_bytes: job_bytes * jobs as usize,
        kept_jobs: state.jobs.len(),
        compacted_state_bytes: serde_json::to_vec(&state)?.len(),
        backups: state.backups.len(),
    })
}

/// Leases and succeeds every runnable task until the job ends, each with a copy-sized report.
fn run_to_end(state: &mut ClusterState, job_id: JobId, at_ms: u64) -> anyhow::Result<()> {
    loop {
        let job = &state.jobs[&job_id];
        if job.state().is_terminal() {
            anyhow::ensure!(job.error().is_none(), "job failed: {:?}", job.error());
            return Ok(());
        }
        let slots = job.runnable_slots();
        anyhow::ensure!(!slots.is_empty(), "job {job_id} is stuck");
        for slot in slots {
            let task_id = TaskId { job_id, slot };
            let lease =
                JobEvent::TaskLeased { slot, attempt: 1, worker_id: "prod/node1".into(), at_ms };
            applied(state, Command::Task { task_id, event: lease })?;
            let report = TaskReport {
                num_objects: 400,
                num_bytes: 900 << 20,
                manifest_key: Some(format!("backups/{job_id}/manifest")),
                transfer: TransferStats {
                    bytes_read: 900 << 20,
                    repository_puts: 60,
                    ..TransferStats::default()
                },
                ..TaskReport::default()
            };
            let done = JobEvent::TaskSucceeded { slot, attempt: 1, report, at_ms: at_ms + 60_000 };
            applied(state, Command::Task { task_id, event: done })?;
        }
    }
}

fn applied(state: &mut ClusterState, command: Command) -> anyhow::Result<()> {
    match state.apply(command) {
        CommandResponse::Applied => Ok(()),
        CommandResponse::Rejected(reason) => anyhow::bail!("rejected: {reason}"),
    }
}
