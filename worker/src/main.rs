//! `bk-worker`: runs next to one database node and does its data IO for bk.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Context;

use bk_worker::WorkerConfig;
use clap::Parser;

/// Runs a bk worker for one database node.
#[derive(Debug, Parser)]
#[command(name = "bk-worker", version)]
struct Args {
    /// TOML config file (see deploy/worker.toml).
    #[arg(long, env = "BK_WORKER_CONFIG")]
    config: PathBuf,
    /// Caps bytes read per second across all tasks, e.g. `100MiB` (wins over the config's
    /// `max_bytes_per_second` and env `BK_MAX_BANDWIDTH`).
    #[arg(long, value_name = "RATE")]
    max_bandwidth: Option<bk_worker::config::ByteRate>,
    /// Prints the effective config (secrets are only ever file paths) and exits.
    #[arg(long)]
    print_config: bool,
}

/// Threads for blocking work (file reads, sealing, the index cache, listings) at most: a few
/// per core keep reads and sealing as parallel as the cores allow, and bound the threads
/// glibc's malloc gives arenas to (see `bk_proto::support::tune_malloc`).
const BLOCKING_THREADS_PER_CORE: usize = 4;

fn main() -> anyhow::Result<()> {
    bk_proto::support::tune_malloc("bk-worker");
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(BLOCKING_THREADS_PER_CORE * cores)
        .build()
        .context("cannot start the async runtime")?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("failed to read `{}`", args.config.display()))?;
    let env: HashMap<String, String> = std::env::vars().collect();
    let mut config = WorkerConfig::parse(&text)?.apply_env(&env)?.validate()?;
    if let Some(rate) = args.max_bandwidth {
        config.max_bytes_per_second = Some(rate.0);
    }
    if args.print_config {
        println!("{}", toml::to_string_pretty(&config)?);
        return Ok(());
    }
    bk_proto::support::init_tracing_with(
        config.log_format,
        bk_worker::retries::retry_counting_layer(),
    );
    tracing::info!(worker_id = %config.worker_id(), store = %config.store.url, "worker starting");
    println!("worker {} started", config.worker_id());
    bk_worker::run(config, env.into_iter().collect(), bk_proto::support::shutdown_on_signal()).await
}
