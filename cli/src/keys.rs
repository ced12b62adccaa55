//! `bkctl repo key add|list|remove` and `bkctl repo check`: repository jobs, waited for, what
//! their task found printed.

use bk_proto::pb;
use serde_json::{json, Value};

use crate::cli::{KeyCommand, OutputFormat};
use crate::client::Client;
use crate::output::emit;

/// Runs a key command and prints the repository's keys afterwards.
///
/// # Errors
/// When the job cannot be submitted or fails (its error names why).
pub(crate) async fn run(
    client: &Client,
    output: OutputFormat,
    command: KeyCommand,
    failed: impl Fn(tonic::Status) -> anyhow::Error,
) -> anyhow::Result<()> {
    use pb::submit_repository_key_request::Action;
    let (repository, action) = match command {
        KeyCommand::Add { repository, new_password_file } => {
            (repository, Action::Add(pb::AddRepositoryKey { new_password_file }))
        }
        KeyCommand::List { repository } => (repository, Action::List(pb::ListRepositoryKeys {})),
        KeyCommand::Remove { repository, key_id } => {
            (repository, Action::Remove(pb::RemoveRepositoryKey { key_id }))
        }
    };
    let request = pb::SubmitRepositoryKeyRequest { repository, action: Some(action) };
    let job_id = client.submit_repository_key(request).await.map_err(failed)?.job_id;
    let job = crate::watch::watch_job(client, &job_id, false).await?;
    let task = job.phases.first().and_then(|phase| phase.tasks.first());
    if crate::render::job_state(job.state) != "succeeded" {
        anyhow::bail!("job {job_id} {}: {}", crate::render::job_state(job.state), job.error);
    }
    let keys: Vec<pb::RepositoryKey> = task.map(|task| task.keys.clone()).unwrap_or_default();
    let events: Vec<String> = task.map(|task| task.events.clone()).unwrap_or_default();
    let document = json!({
        "job_id": job_id,
        "worker_id": task.map(|task| task.worker_id.clone()).unwrap_or_default(),
        "events": events,
        "keys": keys.iter().map(|key| json!({
            "key_id": key.key_id, "created_at": key.created_at, "host": key.host, "kdf": key.kdf,
            "current": key.current,
        })).collect::<Vec<Value>>(),
    });
    emit(output, document, || {
        for event in &events {
            println!("{event}");
        }
        println!("{:<28} {:<27} {:<24} {:<30} CURRENT", "KEY", "CREATED", "HOST", "KDF");
        for key in &keys {
            let current = if key.current { "yes" } else { "" };
            println!(
                "{:<28} {:<27} {:<24} {:<30} {current}",
                key.key_id, key.created_at, key.host, key.kdf
            );
        }
    });
    Ok(())
}

/// Runs a repository check and prints what it found; fails when it found problems.
///
/// # Errors
/// When the job cannot be submitted, or the check fails (each problem is printed first).
pub(crate) async fn check(
    client: &Client,
    output: OutputFormat,
    repository: String,
    read_data_percent: u32,
    failed: impl Fn(tonic::Status) -> anyhow::Error,
) -> anyhow::Result<()> {
    let request = pb::SubmitRepositoryCheckRequest { repository, read_data_percent };
    let job_id = client.submit_repository_check(request).await.map_err(failed)?.job_id;
    let job = crate::watch::watch_job(client, &job_id, output.is_table()).await?;
    let task = job.phases.first().and_then(|phase| phase.tasks.first());
    let field = |pick: fn(&pb::Task) -> &Vec<String>| {
        task.map(|task| pick(task).clone()).unwrap_or_default()
    };
    let (events, warnings, problems) =
        (field(|task| &task.events), field(|task| &task.warnings), field(|task| &task.problems));
    let state = crate::render::job_state(job.state);
    let document = json!({
        "job_id": job_id, "state": state, "error": job.error,
        "events": events, "warnings": warnings, "problems": problems,
    });
    emit(output, document, || {
        for line in &events {
            println!("{line}");
        }
        for line in &warnings {
            println!("WARNING: {line}");
        }
        for line in &problems {
            println!("PROBLEM: {line}");
        }
    });
    if state != "succeeded" {
        anyhow::bail!("repository check {job_id} {state}: {}", job.error);
    }
    Ok(())
}
