//! S3 for real (Garage on loopback): a file cluster backed up into an S3 repository, restored
//! into an S3 bucket; that S3 cluster backed up into a repository in another bucket (credentials
//! from the workers' `AWS_*` environment, verified deep) and into a file repository restored to
//! disk, byte-identical to the original; neither the secret key nor the repository passphrase
//! reaches a log, a job record or a repository.

use std::path::Path;

use bk_tests::garage::{Garage, BUCKET, SECRET_ACCESS_KEY};
use bk_tests::layout::{generate, LayoutParams};
use bk_tests::sandbox::{Sandbox, REPOSITORY_PASSPHRASE};

use crate::support::{exclusion_prefixes, run_job, REGISTER_ENTERPRISE_SOURCE};
use crate::t06_restore_round_trip::assert_restored_identical;

const NODES: [&str; 4] = ["node1", "node2", "node3", "compactor"];

/// A second bucket: S3 source in one bucket, repository in another.
const OTHER_BUCKET: &str = "bk-other";

/// Every file under `dir` (recursively) whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8], skip: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return found };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.starts_with(skip) {
            continue;
        }
        if path.is_dir() {
            found.extend(files_containing(&path, needle, skip));
        } else if let Ok(bytes) = std::fs::read(&path) {
            if bytes.windows(needle.len()).any(|window| window == needle) {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

#[test]
fn test_file_to_s3_to_file_round_trip_is_byte_identical_and_keeps_the_secret() {
    let mut sandbox = Sandbox::start().unwrap();
    let garage_dir = sandbox.path().join("garage");
    let garage = Garage::start(&garage_dir).unwrap();
    let secret_file = garage_dir.join("secret-key");
    std::fs::write(&secret_file, format!("{SECRET_ACCESS_KEY}\n")).unwrap();
    let s3_options = garage.options_toml(&secret_file);

    // A cluster on disk, backed up into a repository in S3.
    let store = sandbox.path().join("store");
    let mut params = LayoutParams::enterprise(4 << 20);
    params.parquet_size = (64 << 10, 512 << 10);
    generate(&store, &params).unwrap();
    sandbox.bkctl_json(&REGISTER_ENTERPRISE_SOURCE).unwrap();
    let s3_repository = format!("s3://{BUCKET}/repository");
    sandbox
        .bkctl_json(&["repo", "add", "s3repo", &s3_repository, "--chunk-size", "65536"])
        .unwrap();
    for node in NODES {
        let tables = format!(
            "[store]\nurl = \"file://{}\"\noptions = {s3_options}\n[repositories.s3repo]\noptions = {s3_options}\n",
            store.display()
        );
        sandbox.start_worker_toml("src", node, "", &tables).unwrap();
    }
    let first = run_job(&sandbox, &["submit", "backup", "--source", "src", "--repo", "s3repo"]);
    let first_id = first["backup_id"].as_str().unwrap().to_string();
    let shown = sandbox.bkctl_json(&["show", &first_id]).unwrap();
    let exclusions = exclusion_prefixes(&shown);

    // Restored from S3 into S3: the cluster now lives in a bucket.
    let s3_cluster = format!("s3://{BUCKET}/cluster2");
    run_job(
        &sandbox,
        &["submit", "restore", "--backup", &first_id, "--target", &s3_cluster, "--nodes-stopped"],
    );

    // That S3 cluster, backed up by workers whose store is the bucket, into a file repository.
    for node in NODES {
        sandbox.kill_worker(node);
    }
    let register_s3_source: Vec<&str> = REGISTER_ENTERPRISE_SOURCE
        .iter()
        .map(|arg| if *arg == "src" { "s3src" } else { arg })
        .collect();
    sandbox.bkctl_json(&register_s3_source).unwrap();
    let file_repository = format!("file://{}", sandbox.path().join("repository").display());
    sandbox.bkctl_json(&["repo", "add", "filerepo", &file_repository]).unwrap();
    // These workers also get credentials the standard way, from AWS_* in their environment:
    // the repository in the other bucket has no options in their config.
    garage.create_bucket(OTHER_BUCKET).unwrap();
    sandbox.set_worker_env(garage.environment());
    for node in NODES {
        let tables = format!("[store]\nurl = \"{s3_cluster}\"\noptions = {s3_options}\n");
        sandbox.start_worker_toml("s3src", node, "", &tables).unwrap();
    }
    let other_bucket = format!("s3://{OTHER_BUCKET}/repository");
    sandbox.bkctl_json(&["repo", "add", "otherbucket", &other_bucket]).unwrap();
    let in_s3 =
        run_job(&sandbox, &["submit", "backup", "--source", "s3src", "--repo", "otherbucket"]);
    let in_s3_id = in_s3["backup_id"].as_str().unwrap();
    run_job(&sandbox, &["submit", "verify", "--backup", in_s3_id, "--deep"]);
    let second =
        run_job(&sandbox, &["submit", "backup", "--source", "s3src", "--repo", "filerepo"]);
    let second_id = second["backup_id"].as_str().unwrap().to_string();
    let restored = sandbox.path().join("restored");
    let restored_url = format!("file://{}", restored.display());
    run_job(
        &sandbox,
        &[
            "submit",
            "restore",
            "--backup",
            &second_id,
            "--target",
            &restored_url,
            "--nodes-stopped",
        ],
    );
    assert_restored_identical(&store, &restored, &exclusions);

    // Neither the S3 secret nor the repository passphrase is in a log, a coordinator record
    // (its Raft log and snapshots are under the sandbox too), bkctl's output, or the
    // repositories (the file one here; the S3 ones hold the same kinds of files).
    let records = sandbox.bkctl(&["-o", "json", "jobs", "--limit", "100"]).unwrap().stdout;
    for secret in [SECRET_ACCESS_KEY, REPOSITORY_PASSPHRASE] {
        let needle = secret.as_bytes();
        assert!(!records.windows(needle.len()).any(|window| window == needle));
        let leaks = files_containing(sandbox.path(), needle, &garage_dir);
        assert!(leaks.is_empty(), "a secret leaked into {leaks:?}");
    }
}
