//! Submitting jobs.

use anyhow::bail;
use bk_proto::pb;

use super::context::{submitted, CommandContext};
use crate::cli::SubmitCommand;

/// `bkctl submit …`.
pub(super) async fn submit(ctx: &CommandContext, command: SubmitCommand) -> anyhow::Result<()> {
    let (client, output) = (&ctx.client, ctx.output);
    let failed = |status: tonic::Status| ctx.failed(status);
    match command {
        SubmitCommand::Backup {
            source,
            repository,
            wait,
            adopt_checkpoint,
            full,
            allow_corrupt,
        } => {
            let response = client
                .submit_backup(pb::SubmitBackupRequest {
                    source,
                    repository,
                    adopt_checkpoint,
                    full,
                    allow_corrupt,
                })
                .await
                .map_err(failed)?;
            submitted(client, output, &response.job_id, wait).await?;
        }
        SubmitCommand::Restore(args) => {
            let request = restore_request(
                args.backup_id,
                &args.targets,
                args.nodes_stopped,
                args.wipe,
                args.resume,
            )?;
            let job_id = client.submit_restore(request).await.map_err(failed)?.job_id;
            submitted(client, output, &job_id, args.wait).await?;
        }
        SubmitCommand::Prune(args) => {
            let request = pb::SubmitPruneRequest {
                repository: args.repository,
                source: args.source,
                keep_last: args.keep_last,
                keep_daily: args.keep_daily,
                keep_weekly: args.keep_weekly,
                keep_monthly: args.keep_monthly,
                dry_run: args.dry_run,
                max_unused_percent: args.max_unused,
            };
            let job_id = client.submit_prune(request).await.map_err(failed)?.job_id;
            submitted(client, output, &job_id, args.wait).await?;
        }
        SubmitCommand::Drill { backup_id, source, repository, wait } => {
            let request = pb::SubmitDrillRequest {
                backup_id: backup_id.unwrap_or_default(),
                source: source.unwrap_or_default(),
                repository: repository.unwrap_or_default(),
            };
            let job_id = client.submit_drill(request).await.map_err(failed)?.job_id;
            submitted(client, output, &job_id, wait).await?;
        }
        SubmitCommand::Verify { backup_id, deep, wait } => {
            let job_id = client
                .submit_verify(pb::SubmitVerifyRequest { backup_id, deep })
                .await
                .map_err(failed)?
                .job_id;
            submitted(client, output, &job_id, wait).await?;
        }
    }
    Ok(())
}

/// `--target URL` (default) and `--target NODE=URL` (per node) into a request.
fn restore_request(
    backup_id: String,
    targets: &[String],
    nodes_stopped: bool,
    wipe: bool,
    resume: bool,
) -> anyhow::Result<pb::SubmitRestoreRequest> {
    let mut request =
        pb::SubmitRestoreRequest { backup_id, nodes_stopped, wipe, resume, ..Default::default() };
    for target in targets {
        match target.split_once('=') {
            Some((node, url)) if !node.contains("://") => {
                request.node_targets.insert(node.to_string(), url.to_string());
            }
            _ if request.target.is_empty() => request.target = target.clone(),
            _ => bail!("two default targets given (`{}` and `{target}`): use NODE=URL for per-node targets", request.target),
        }
    }
    Ok(request)
}
