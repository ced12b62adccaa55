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
        sandbox.set_worker_env(
            worker_env.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect(),
        );
        sandbox.register_source("src", params)?;
        let tables =
            format!("[store]\nurl = \"file://{}\"\n{repository_tables}", cluster.display());
        for node in params.data_nodes.iter().chain(&params.compactor_node) {
            sandbox.start_worker_toml("src", node, "", &tables)?;
        }
        Ok(Self { sandbox })
    }

    /// Registers repository `name` at `url`.
    ///
    /// # Errors
    /// When bkctl refuses it.
    pub(crate) fn add_repository(&self, name: &str, url: &str) -> anyhow::Result<()> {
        self.sandbox.bkctl_json(&["repo", "add", name, url]).map(drop)
    }

    /// Runs `bkctl -o json submit … --wait`, requires success, and returns the wall-clock
    /// seconds from submit to the job's end with the job.
    ///
    /// # Errors
    /// When the job fails (its JSON is in the error).
    pub(crate) fn timed_job(&self, submit: &[&str]) -> anyhow::Result<(f64, Value)> {
        let mut args = vec!["-o", "json", "submit"];
        args.extend_from_slice(submit);
        args.push("--wait");
        let start = Instant::now();
        let output = self.sandbox.bkctl(&args)?;
        let seconds = start.elapsed().as_secs_f64();
        if !output.status.success() {
            bail!(
                "bkctl {args:?} failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let job = serde_json::from_slice(&output.stdout).context("bkctl printed no job JSON")?;
        Ok((seconds, job))
    }
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
