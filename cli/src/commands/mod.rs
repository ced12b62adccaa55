//! What each command does: [`run`] sets up the client and the output format and dispatches;
//! one module per noun does the work.
//!
//! - [`catalog`]: sources and repositories.
//! - [`submit`]: submitting jobs.
//! - [`jobs`]: following, cancelling and listing jobs, listing and showing backups.
//! - [`cluster`]: workers, the coordinator cluster, schedules and the status screen.
//! - [`context`]: what every command is given, and following a submitted job to its end.

mod catalog;
mod cluster;
mod context;
mod jobs;
mod submit;

use crate::call_error::Transport;
use crate::cli::{Cli, Command};
use crate::client::Client;
use context::CommandContext;

/// Runs a command.
///
/// # Errors
/// A one-line error for the user; the process exits non-zero.
pub(crate) async fn run(cli: Cli) -> anyhow::Result<()> {
    let output = cli.output;
    if let Command::Demo(args) = cli.command {
        return crate::demo::run_demo(args, output).await;
    }
    if let Command::Completion { shell } = cli.command {
        let mut command = <Cli as clap::CommandFactory>::command();
        clap_complete::generate(shell, &mut command, "bkctl", &mut std::io::stdout());
        return Ok(());
    }
    let tls_files = cli.tls_files();
    let client = Client::with_token(&cli.endpoint, cli.token.as_deref(), &tls_files)?;
    let transport = match (tls_files.is_enabled(), tls_files.cert_file.is_some()) {
        (false, _) => Transport::Plaintext,
        (true, false) => Transport::Tls,
        (true, true) => Transport::MutualTls,
    };
    let ctx = CommandContext { client, output, transport, local: cli.local };
    match cli.command {
        Command::Source(command) => catalog::source(&ctx, command).await,
        Command::Sources => catalog::sources(&ctx).await,
        Command::Repo(command) => catalog::repo(&ctx, command).await,
        Command::Repos => catalog::repos(&ctx).await,
        Command::Submit(command) => submit::submit(&ctx, command).await,
        Command::Cancel { job_id } => jobs::cancel(&ctx, job_id).await,
        Command::Watch { job_id } => jobs::watch(&ctx, job_id).await,
        Command::Job { job_id } => jobs::job(&ctx, job_id).await,
        Command::Jobs { limit } => jobs::jobs(&ctx, limit).await,
        Command::Backups { source } => jobs::backups(&ctx, source).await,
        Command::Show { backup_id } => jobs::show(&ctx, backup_id).await,
        Command::Workers => cluster::workers(&ctx).await,
        Command::Cluster(command) => cluster::cluster(&ctx, command).await,
        Command::Schedule(command) => cluster::schedule(&ctx, command).await,
        Command::Status => cluster::status(&ctx).await,
        Command::Demo(_) | Command::Completion { .. } => unreachable!("handled above"),
    }
}
