//! bk as the benchmark runs it: release builds of `bk-coordinator`, one `bk-worker` process per
//! node and `bkctl`, on loopback, started through the test kit's sandbox.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};
use bk_tests::layout::LayoutParams;
use bk_tests::sandbox::Sandbox;
use serde_json::Value;

/// A coordinator, a worker per node of one generated cluster, and its source `src` registered.
pub(crate) struct Deployment {
    pub(crate) sandbox: Sandbox,
    /// Its workers' node ids.
    nodes: Vec<String>,
}

impl Deployment {
    /// Starts a single-replica coordinator and one worker per node whose store is `cluster`;
    /// `repository_tables` is appended to every worker's config (`[repositories.NAME]`).
    ///
    /// # Errors
    /// When a process cannot start or the source cannot be registered.
    pub(crate) fn start(
        cluster: &Path,
        params: &LayoutParams,
        repository_tables: &str,
    ) -> anyhow::Result<Self> {
        Self::start_with_worker_env(cluster, params, repository_tables, &[])
    }

    /// As [`Deployment::start`], with `worker_env` given to every worker (the bench-only
    /// switches that measure what a feature costs, e.g. `BK_SKIP_FORMAT_CHECKS=1`).
    ///
    /// # Errors
    /// When a process cannot start or the source cannot be registered.
    pub(crate) fn start_with_worker_env(
        cluster: &Path,
        params: &LayoutParams,
        repository_tables: &str,
        worker_env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        // Production's lease timeout, not the sandbox's 3 s: on a loaded 2-core machine running
        // a hundred workers, short leases would measure re-queues, not bk.
        let mut sandbox = Sandbox::start_cluster(1, &[("BK_LEASE_TIMEOUT", "30s")])?;
        // Production's key derivation (64 MiB, 3 passes), not the test kit's shortcut.
        let production_kdf = [("BK_ARGON2_MEMORY_KIB", "65536"), ("BK_ARGON2_ITERATIONS", "3")];
        sandbox.set_worker_env(
            production_kdf
                .iter()
                .chain(worker_env)
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect(),
        );
        sandbox.register_source("src", params)?;
        let tables =
            format!("[store]\nurl = \"file://{}\"\n{repository_tables}", cluster.display());
        let nodes: Vec<String> =
            params.data_nodes.iter().chain(&params.compactor_node).cloned().collect();
        for node in &nodes {
            sandbox.start_worker_toml("src", node, "", &tables)?;
        }
        Ok(Self { sandbox, nodes })
    }

    /// Registers repository `name` at `url`, with `extra` `bkctl repo add` options.
    ///
    /// # Errors
    /// When bkctl refuses it.
    pub(crate) fn add_repository(
        &self,
        name: &str,
        url: &str,
        extra: &[&str],
    ) -> anyhow::Result<()> {
        let mut args = vec!["repo", "add", name, url];
        args.extend_from_slice(extra);
        self.sandbox.bkctl_json(&args).map(drop)
    }

    /// Deletes the workers' listing memos (`<cache_dir>/listings`), so the next backup reads
    /// every directory of the nodes again: what an incremental costs without them.
    ///
    /// # Errors
    /// When a memo directory cannot be removed.
    pub(crate) fn forget_listing_memos(&self) -> anyhow::Result<()> {
        for node in &self.nodes {
            let memos = self.sandbox.path().join(format!("cache-{node}")).join("listings");
            match std::fs::remove_dir_all(&memos) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                    return Err(error)
                        .with_context(|| format!("cannot remove {}", memos.display()));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The largest peak resident memory of its workers, bytes.
    pub(crate) fn peak_worker_rss(&self) -> u64 {
        self.worker_peaks().max().unwrap_or(0)
    }

    fn worker_peaks(&self) -> impl Iterator<Item = u64> + '_ {
        self.nodes.iter().filter_map(|node| self.sandbox.worker_peak_rss_bytes(node))
    }

    /// `bkctl show` of a backup.
    ///
    /// # Errors
    /// When bkctl fails.
    pub(crate) fn show(&self, backup_id: &str) -> anyhow::Result<Value> {
        self.sandbox.bkctl_json(&["show", backup_id])
    }

    /// Runs `bkctl -o json submit … --wait`, requires success, and returns the wall-clock
    /// seconds from submit to the job's end with the job; the largest worker peak RSS during
    /// the job is noted in `memory` under `row`.
    ///
    /// # Errors
    /// When the job fails (its JSON is in the error).
    pub(crate) fn timed_job(&self, submit: &[&str]) -> anyhow::Result<(f64, Value)> {
        let run = self.measured_job(submit)?;
        Ok((run.seconds, run.job))
    }

    /// [`Deployment::timed_job`] with the largest worker peak RSS during the job.
    ///
    /// # Errors
    /// When the job fails (its JSON is in the error).
    pub(crate) fn measured_job(&self, submit: &[&str]) -> anyhow::Result<JobRun> {
        let mut args = vec!["-o", "json", "submit"];
        args.extend_from_slice(submit);
        args.push("--wait");
        self.sandbox.reset_worker_peak_rss();
        let timeline = std::env::var_os("BK_BENCH_TIMELINE").is_some();
        if timeline {
            // A line to start a profiler on (the steps are otherwise silent).
            println!("    job started: {}", submit.join(" "));
        }
        let start = Instant::now();
        let output = self.sandbox.bkctl(&args)?;
        let seconds = start.elapsed().as_secs_f64();
        if timeline {
            println!("    job ended: {} in {seconds:.2} s", submit.join(" "));
        }
        if !output.status.success() {
            bail!(
                "bkctl {args:?} failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let job = serde_json::from_slice(&output.stdout).context("bkctl printed no job JSON")?;
        if timeline {
            print_timeline(&job);
        }
        Ok(JobRun {
            seconds,
            job,
            peak_worker_rss: self.peak_worker_rss(),
            sum_worker_rss: self.worker_peaks().sum(),
        })
    }
}

/// Prints when each phase and task ran, in ms from the job's creation (`BK_BENCH_TIMELINE=1`):
/// where a short job's fixed costs are.
fn print_timeline(job: &Value) {
    let created = job["created_at_ms"].as_u64().unwrap_or(0);
    let at = |value: &Value| value.as_u64().map_or(-1, |ms| ms as i64 - created as i64);
    println!("    timeline: ended at {} ms", at(&job["finished_at_ms"]));
    for phase in job["phases"].as_array().into_iter().flatten() {
        println!(
            "      {:<12} {:>6} → {:>6} ms",
            phase["name"].as_str().unwrap_or("?"),
            at(&phase["started_at_ms"]),
            at(&phase["finished_at_ms"])
        );
        for task in phase["tasks"].as_array().into_iter().flatten() {
            println!(
                "        {:>6} → {:>6} ms  {}",
                at(&task["started_at_ms"]),
                at(&task["finished_at_ms"]),
                task["label"].as_str().unwrap_or("?")
            );
        }
    }
}

/// One job as the bench measured it.
pub(crate) struct JobRun {
    /// Submit to end, wall clock.
    pub(crate) seconds: f64,
    /// The job, as `bkctl -o json` printed it.
    pub(crate) job: Value,
    /// The largest peak resident memory of a worker during the job.
    pub(crate) peak_worker_rss: u64,
    /// The workers' peaks during the job, added up (what the cluster's machines gave bk).
    pub(crate) sum_worker_rss: u64,
}

/// Builds the three binaries in this executable's profile.
///
/// # Errors
/// When cargo fails.
pub(crate) fn build_binaries() -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let release = exe.parent().is_some_and(|dir| dir.ends_with("release"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.args(["build", "-p", "bk-coordinator", "-p", "bk-worker", "-p", "bkctl", "--bins"]);
    if release {
        command.arg("--release");
    }
    crate::tools::run(&mut command)
}
