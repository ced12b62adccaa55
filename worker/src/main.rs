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
/// per core keep reads and sealing as parallel as the cores allow.
const BLOCKING_THREADS_PER_CORE: usize = 4;

/// mimalloc rather than glibc's malloc: a worker runs next to a database node, job after job,
/// and glibc kept what earlier jobs freed (fragments inside its arenas, given back only from an
/// arena's top), so its peak grew from one job to the next. Measured (`bench --size 256MiB
/// --reps 3 --no-s3`, same machine and hour), the largest worker's backup peak over the three
/// repetitions: glibc (tuned as in `bk_proto::support`) 187, 257, 305 MiB; mimalloc 3 with
/// its default purge delay (1 s, checked only when a thread allocates again) 239, 327, 358;
/// mimalloc 2 worse still; mimalloc 3 purging freed pages when they are freed
/// ([`MIMALLOC_SETTINGS`]) 177, 228, 220, no slower there. Purging at once makes every fresh
/// megabyte buffer fault its pages in again, so the worker pools those it reuses (see
/// `repository::buffers`; the 2 GiB restore took 1.5× `cp -r` before its buffers were pooled
/// too). Built without transparent huge pages
/// (the crate's `no_thp`): mimalloc asks for them, and a 2 MiB page stays whole while a few
/// small blocks live in it. On `bench --objects 1000000 --reps 2` (the workers' own memory
/// per job) that took the full backup's peak from 257 and 253 MiB to 221 and 214, the
/// unchanged incremental's from 145 and 168 to 99 and 107. The chunk and pack buffers that
/// are worth keeping are kept by the worker's own pools (`repository::buffers`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's settings, read from the environment when the process starts (see
/// `bk_proto::support::tune_malloc`): freed pages go back to the kernel at once.
const MIMALLOC_SETTINGS: [(&str, &str); 1] = [("MIMALLOC_PURGE_DELAY", "0")];

fn main() -> anyhow::Result<()> {
    bk_proto::support::tune_malloc("bk-worker", &MIMALLOC_SETTINGS);
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
