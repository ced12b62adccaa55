//! What every command is given, and following a submitted job to its end.

use anyhow::bail;
use bk_proto::pb;

use crate::call_error::{call_failed, Transport};
use crate::cli::OutputFormat;
use crate::client::Client;
use crate::output::emit;
use crate::render;

/// What every command is given: the client, the `-o` format and how to explain a failed call.
pub(crate) struct CommandContext {
    pub(super) client: Client,
    pub(super) output: OutputFormat,
    pub(super) transport: Transport,
    /// Reads answered by the addressed replica as it stands (`--local`).
    pub(super) local: bool,
}

impl CommandContext {
    /// A failed call as the user reads it (with the transport in the hint).
    pub(super) fn failed(&self, status: tonic::Status) -> anyhow::Error {
        call_failed(status, self.transport)
    }
}

/// Prints the job id, or with `wait` follows the job and prints its outcome.
pub(super) async fn submitted(
    client: &Client,
    output: OutputFormat,
    job_id: &str,
    wait: bool,
) -> anyhow::Result<()> {
    if !wait {
        emit(output, serde_json::json!({"job_id": job_id}), || println!("{job_id}"));
        return Ok(());
    }
    if output.is_table() {
        eprintln!("job {job_id}");
    }
    let job = crate::watch::watch_job(client, job_id, output.is_table()).await?;
    finish_job(output, &job)
}

/// Prints the job's outcome; fails when the job failed.
pub(super) fn finish_job(output: OutputFormat, job: &pb::Job) -> anyhow::Result<()> {
    emit(output, render::job_json(job), || render::print_job(job));
    if render::job_state(job.state) != "succeeded" {
        bail!("job {} {}: {}", job.id, render::job_state(job.state), job.error);
    }
    Ok(())
}
