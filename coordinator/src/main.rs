//! `bk-coordinator`: one replica of the bk coordinator.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Context;
use bk_coordinator::CoordinatorConfig;
use clap::Parser;

/// Runs one bk coordinator replica.
#[derive(Debug, Parser)]
#[command(name = "bk-coordinator", version)]
struct Args {
    /// TOML config file (see deploy/coordinator.toml); defaults apply without one.
    #[arg(long, env = "BK_COORDINATOR_CONFIG")]
    config: Option<PathBuf>,
    /// Overrides `listen_addr`.
    #[arg(long)]
    listen: Option<String>,
    /// Overrides `data_dir`.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Overrides `replica_id`.
    #[arg(long)]
    replica_id: Option<u64>,
    /// Join an existing cluster (`bkctl cluster add-replica`) instead of initialising a new one:
    /// sets `bootstrap = false`.
    #[arg(long)]
    join: bool,
    /// Prints the effective config and exits.
    #[arg(long)]
    print_config: bool,
}

fn main() -> anyhow::Result<()> {
    bk_proto::support::tune_malloc("bk-coordinator", &[]);
    tokio::runtime::Runtime::new().context("cannot start the async runtime")?.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let text = match &args.config {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("failed to read `{}`", path.display()))?,
        None => "version = 1".to_string(),
    };
    let env: HashMap<String, String> = std::env::vars().collect();
    let mut config = CoordinatorConfig::parse(&text)?.apply_env(&env)?;
    config.listen_addr = args.listen.unwrap_or(config.listen_addr);
    config.data_dir = args.data_dir.unwrap_or(config.data_dir);
    config.replica_id = args.replica_id.unwrap_or(config.replica_id);
    config.bootstrap &= !args.join;
    let config = config.validate()?;
    if args.print_config {
        println!("{}", toml::to_string_pretty(&config)?);
        return Ok(());
    }
    bk_proto::support::init_tracing(config.log_format);
    let listener = tokio::net::TcpListener::bind(&config.listen_addr)
        .await
        .with_context(|| format!("failed to bind grpc listener on `{}`", config.listen_addr))?;
    // The first stdout line says where we listen (port 0 picks one): scripts and tests read it.
    println!("listening on {}", listener.local_addr()?);
    bk_coordinator::run(config, listener, bk_proto::support::shutdown_on_signal()).await
}
