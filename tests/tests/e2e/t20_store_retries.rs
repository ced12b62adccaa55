//! Throttling: an S3 server that answers `503 SlowDown` is retried with backoff as configured,
//! the retries are counted and shown (`bkctl workers`), and a store that
//! never recovers fails the job with the server's reason, committing nothing.

use std::time::Duration;

use bk_tests::flaky_proxy::{FlakyProxy, ProxyFault};
use bk_tests::garage::{Garage, BUCKET, SECRET_ACCESS_KEY};
use bk_tests::sandbox::Sandbox;
use serde_json::Value;

use crate::support::register_core_source;

/// Starts Garage behind a proxy that throttles the first `throttled` connections, and a worker
/// for the Core source whose repository `s3repo` goes through the proxy with `max_retries`.
fn throttled_setup(throttled: usize, max_retries: u32) -> (Sandbox, Garage, FlakyProxy) {
    let retry = format!(
        "[retry]\nmax_retries = {max_retries}\ninitial_backoff = \"10ms\"\nmax_backoff = \"50ms\"\n"
    );
    proxied_setup(|upstream| FlakyProxy::start(upstream, throttled), &retry)
}

/// Starts Garage behind the proxy `start_proxy` makes for its `host:port`, and a worker for the
/// Core source (with `retry` tables) whose repository `s3repo` goes through the proxy.
fn proxied_setup(
    start_proxy: impl FnOnce(&str) -> anyhow::Result<FlakyProxy>,
    retry: &str,
) -> (Sandbox, Garage, FlakyProxy) {
    let mut sandbox = Sandbox::start().unwrap();
    let garage_dir = sandbox.path().join("garage");
    let garage = Garage::start(&garage_dir).unwrap();
    let secret_file = garage_dir.join("secret-key");
    std::fs::write(&secret_file, SECRET_ACCESS_KEY).unwrap();
    let proxy = start_proxy(garage.endpoint().trim_start_matches("http://")).unwrap();
    let store = register_core_source(&sandbox);
    let repository = format!("s3://{BUCKET}/proxied");
    sandbox.bkctl_json(&["repo", "add", "s3repo", &repository]).unwrap();
    let tables = format!(
        "{retry}[store]\nurl = \"file://{}\"\n[repositories.s3repo]\noptions = {}\n",
        store.display(),
        garage.options_toml_at(&proxy.endpoint(), &secret_file)
    );
    sandbox.start_worker_toml("core", "node0", "", &tables).unwrap();
    (sandbox, garage, proxy)
}

fn backup(sandbox: &Sandbox) -> (bool, Value) {
    let output = sandbox
        .bkctl(&[
            "-o", "json", "submit", "backup", "--source", "core", "--repo", "s3repo", "--wait",
        ])
        .unwrap();
    (output.status.success(), serde_json::from_slice(&output.stdout).unwrap_or(Value::Null))
}

#[test]
fn test_slow_down_answers_are_retried_counted_and_shown() {
    let (sandbox, _garage, proxy) = throttled_setup(4, 10);
    let (succeeded, job) = backup(&sandbox);
    assert!(succeeded, "the backup did not survive throttling: {job}");
    assert_eq!(proxy.throttled(), 4, "not every throttled connection was retried through");
    let backup_id = job["backup_id"].as_str().unwrap();
    let verify = sandbox
        .bkctl(&["-o", "json", "submit", "verify", "--backup", backup_id, "--deep", "--wait"])
        .unwrap();
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));

    let retries = sandbox
        .wait_until(Duration::from_secs(10), "the retries to reach bkctl workers", || {
            let workers = sandbox.bkctl_json(&["workers"]).ok()?;
            let retries = workers[0]["store_retries"].as_u64()?;
            (retries >= 4).then_some(retries)
        })
        .unwrap();
    let table = sandbox.bkctl(&["workers"]).unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains(&format!("{retries} store retries")), "{table}");
}

#[test]
fn test_a_store_that_stays_throttled_fails_the_job_with_its_reason_and_commits_nothing() {
    let (sandbox, _garage, _proxy) = throttled_setup(usize::MAX, 1);
    let (succeeded, job) = backup(&sandbox);
    assert!(!succeeded, "a backup into a store that only throttles succeeded: {job}");
    let text = job.to_string();
    assert!(text.contains("503") || text.contains("SlowDown"), "the reason is not named: {text}");
    let backups = sandbox.bkctl_json(&["backups"]).unwrap();
    assert_eq!(backups.as_array().map(Vec::len), Some(0), "{backups}");
}

#[test]
fn test_a_pack_damaged_on_its_way_to_the_server_is_refused_and_never_part_of_a_backup() {
    // The first pack upload loses a byte on the way, as through a bad link; the default
    // request integrity (a CRC64-NVME checksum header) must make the server refuse it.
    let (sandbox, _garage, proxy) =
        proxied_setup(|upstream| FlakyProxy::start_damaging(upstream, "/packs/", 1), "");
    let (succeeded, job) = backup(&sandbox);
    assert_eq!(proxy.damaged(), 1, "no pack upload was damaged: the test proves nothing");
    assert!(succeeded, "a re-sent pack should have completed the backup: {job}");
    let backup_id = job["backup_id"].as_str().unwrap();
    let verify = sandbox
        .bkctl(&["-o", "json", "submit", "verify", "--backup", backup_id, "--deep", "--wait"])
        .unwrap();
    assert!(
        verify.status.success(),
        "the damaged pack was stored: {}",
        String::from_utf8_lossy(&verify.stdout)
    );
}

/// A deep verify whose reads meet a store resetting every connection says the store failed and
/// tries again (backing off); it never reports the backup damaged. The chaos campaign saw a
/// verify fail with "problems" that were S3 resets.
#[test]
fn test_a_deep_verify_that_cannot_read_the_store_retries_instead_of_blaming_the_backup() {
    let retry = "[retry]\nmax_retries = 1\ninitial_backoff = \"10ms\"\nmax_backoff = \"50ms\"\n";
    let (sandbox, _garage, proxy) = proxied_setup(|upstream| FlakyProxy::start(upstream, 0), retry);
    let (succeeded, job) = backup(&sandbox);
    assert!(succeeded, "{job}");
    let backup_id = job["backup_id"].as_str().unwrap();
    proxy.set_fault(ProxyFault::Reset);
    let submitted =
        sandbox.bkctl_json(&["submit", "verify", "--backup", backup_id, "--deep"]).unwrap();
    let job_id = submitted["job_id"].as_str().unwrap();
    // Once the first attempt has failed on the resets (or the job ended), the store heals.
    let first = sandbox
        .wait_until(Duration::from_secs(60), "the first attempt to fail", || {
            let job = sandbox.bkctl_json(&["job", job_id]).ok()?;
            let task = &job["phases"][0]["tasks"][0];
            let failed_once = task["error"].as_str().is_some_and(|error| !error.is_empty());
            (failed_once || job["state"] != "running").then_some(job)
        })
        .unwrap();
    proxy.set_fault(ProxyFault::None);
    assert_ne!(first["state"], "failed", "the verify blamed the backup for the store: {first}");
    let ended = sandbox
        .wait_until(Duration::from_secs(60), "the verify to end", || {
            let job = sandbox.bkctl_json(&["job", job_id]).ok()?;
            (job["state"] == "succeeded" || job["state"] == "failed").then_some(job)
        })
        .unwrap();
    assert_eq!(ended["state"], "succeeded", "{ended}");
    let task = &ended["phases"][0]["tasks"][0];
    assert!(task["attempt"].as_u64().unwrap() >= 2, "the resets were never met: {ended}");
    assert_eq!(task["problems"].as_array().map(Vec::len), Some(0), "{ended}");
}
