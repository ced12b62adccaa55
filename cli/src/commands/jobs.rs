//! Jobs and backups: following, cancelling, listing, showing.

use bk_proto::pb;
use serde_json::Value;

use super::context::{finish_job, CommandContext};
use crate::output::emit;
use crate::render;

/// `bkctl cancel JOB`.
pub(super) async fn cancel(ctx: &CommandContext, job_id: String) -> anyhow::Result<()> {
    let (client, output) = (&ctx.client, ctx.output);
    let failed = |status: tonic::Status| ctx.failed(status);
    client.cancel_job(pb::CancelJobRequest { job_id: job_id.clone() }).await.map_err(failed)?;
    emit(output, serde_json::json!({"job_id": job_id, "cancelled": true}), || {
        println!("job {job_id} cancelled; its cleanup tasks still run (`bkctl watch {job_id}`)")
    });
    Ok(())
}

/// `bkctl watch JOB`.
pub(super) async fn watch(ctx: &CommandContext, job_id: String) -> anyhow::Result<()> {
    let output = ctx.output;
    let job = crate::watch::watch_job(&ctx.client, &job_id, output.is_table()).await?;
    finish_job(output, &job)?;
    Ok(())
}

/// `bkctl job JOB`.
pub(super) async fn job(ctx: &CommandContext, job_id: String) -> anyhow::Result<()> {
    let (client, output) = (&ctx.client, ctx.output);
    let failed = |status: tonic::Status| ctx.failed(status);
    let job =
        client.get_job(pb::GetJobRequest { job_id, local: ctx.local }).await.map_err(failed)?;
    emit(output, render::job_json(&job), || render::print_job(&job));
    Ok(())
}

/// `bkctl jobs`.
pub(super) async fn jobs(ctx: &CommandContext, limit: u32) -> anyhow::Result<()> {
    let (client, output) = (&ctx.client, ctx.output);
    let failed = |status: tonic::Status| ctx.failed(status);
    let jobs = client
        .list_jobs(pb::ListJobsRequest { limit, local: ctx.local })
        .await
        .map_err(failed)?
        .jobs;
    emit(output, Value::Array(jobs.iter().map(render::job_json).collect()), || {
        for job in &jobs {
            println!(
                "{}  {:<10} source={:<16} repo={:<12} backup={}",
                job.id,
                render::job_state(job.state),
                job.source,
                job.repository,
                render::or_dash(&job.backup_id)
            );
        }
    });
    Ok(())
}

/// `bkctl backups`.
pub(super) async fn backups(ctx: &CommandContext, source: Option<String>) -> anyhow::Result<()> {
    let (client, output) = (&ctx.client, ctx.output);
    let failed = |status: tonic::Status| ctx.failed(status);
    let request = pb::ListBackupsRequest { source: source.unwrap_or_default(), local: ctx.local };
    let backups = client.list_backups(request).await.map_err(failed)?.backups;
    emit(output, Value::Array(backups.iter().map(render::backup_json).collect()), || {
        let drilled = crate::render_drill::newest_drilled(&backups);
        for backup in &backups {
            let mark = drilled
                .get(backup.source.as_str())
                .filter(|(id, _)| *id == backup.id)
                .map(|(_, drill)| format!("  {}", crate::render_drill::drill_mark(drill)))
                .unwrap_or_default();
            println!(
                "{}  source={:<16} {:>8} objects {:>10}{mark}",
                backup.id,
                backup.source,
                backup.num_objects,
                render::human_bytes(backup.num_bytes)
            );
        }
    });
    Ok(())
}

/// `bkctl show BACKUP`.
pub(super) async fn show(ctx: &CommandContext, backup_id: String) -> anyhow::Result<()> {
    let (client, output) = (&ctx.client, ctx.output);
    let failed = |status: tonic::Status| ctx.failed(status);
    let backup = client
        .get_backup(pb::GetBackupRequest { backup_id, local: ctx.local })
        .await
        .map_err(failed)?;
    emit(output, render::backup_json(&backup), || render::print_backup(&backup));
    Ok(())
}
