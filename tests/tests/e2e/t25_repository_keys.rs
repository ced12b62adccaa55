//! The repository's passphrases: a wrong or missing one fails before anything is written;
//! passphrases rotate without rewriting data (add, back up, switch, remove the old, restore);
//! a format-1 repository is refused, never misread; two workers racing to create a repository
//! in S3 (where create-only writes are not honoured) end with one repository.

use std::collections::BTreeMap;
use std::path::Path;

use bk_tests::garage::{Garage, BUCKET};
use bk_tests::layout::{generate, LayoutParams};
use bk_tests::sandbox::Sandbox;
use bk_tests::tree::hash_tree;
use serde_json::Value;

use crate::support::{exclusion_prefixes, register_core_source, run_job};

/// Every file under `dir` with its size: what "nothing was written" is checked against.
fn listing(dir: &Path) -> BTreeMap<String, u64> {
    hash_tree(dir)
        .map(|tree| tree.into_iter().map(|(key, (size, _))| (key, size)).collect())
        .unwrap_or_default()
}

fn backup(sandbox: &Sandbox) -> (bool, Value) {
    let output = sandbox
        .bkctl(&["-o", "json", "submit", "backup", "--source", "core", "--repo", "repo", "--wait"])
        .unwrap();
    (output.status.success(), serde_json::from_slice(&output.stdout).unwrap())
}

fn restart_worker(sandbox: &mut Sandbox, store: &Path, passphrase: Option<&str>, extra: &str) {
    sandbox.kill_worker("node0");
    sandbox.set_worker_passphrase(passphrase);
    sandbox.start_worker_with("core", "node0", store, extra).unwrap();
}

#[test]
fn test_a_wrong_or_missing_passphrase_fails_before_anything_is_written() {
    let mut sandbox = Sandbox::start().unwrap();
    let store = register_core_source(&sandbox);
    let repository = sandbox.path().join("repository");
    sandbox.start_worker("core", "node0", &store).unwrap();
    let (succeeded, job) = backup(&sandbox);
    assert!(succeeded, "{job}");
    let before = listing(&repository);

    restart_worker(&mut sandbox, &store, Some("not-the-passphrase"), "");
    let (succeeded, job) = backup(&sandbox);
    assert!(!succeeded, "a wrong passphrase backed up: {job}");
    let error = job["error"].as_str().unwrap();
    assert!(
        error.contains("cannot open repository `repo`")
            && error.contains("does not open any of its 1 key(s)")
            && error.contains("[repositories.repo]"),
        "{error}"
    );
    assert!(!error.contains("not-the-passphrase"), "the passphrase is in the error");
    assert_eq!(listing(&repository), before, "a wrong passphrase wrote into the repository");

    restart_worker(&mut sandbox, &store, None, "");
    let (succeeded, job) = backup(&sandbox);
    assert!(!succeeded, "no passphrase backed up: {job}");
    let error = job["error"].as_str().unwrap();
    assert!(
        error.contains("this worker has no passphrase for it")
            && error.contains("BK_REPOSITORY_PASSWORD_REPO")
            && error.contains("the coordinator never holds it"),
        "{error}"
    );
    assert_eq!(listing(&repository), before, "a worker without a passphrase wrote");
}

#[test]
fn test_passphrases_rotate_without_rewriting_data_and_old_backups_restore() {
    let mut sandbox = Sandbox::start().unwrap();
    let store = register_core_source(&sandbox);
    let repository = sandbox.path().join("repository");
    // The worker reads its passphrase from a file, re-read at every task.
    let passphrase_file = sandbox.path().join("repository-passphrase");
    std::fs::write(&passphrase_file, "first passphrase\n").unwrap();
    let extra = format!("repository_password_file = \"{}\"", passphrase_file.display());
    restart_worker(&mut sandbox, &store, None, &extra);
    let (succeeded, first) = backup(&sandbox);
    assert!(succeeded, "{first}");

    let new_file = sandbox.path().join("new-passphrase");
    std::fs::write(&new_file, "second passphrase\n").unwrap();
    let added = sandbox
        .bkctl_json(&[
            "repo",
            "key",
            "add",
            "repo",
            "--new-password-file",
            &new_file.display().to_string(),
        ])
        .unwrap();
    let keys = added["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{added}");
    let old_key = keys.iter().find(|key| key["current"] == true).unwrap()["key_id"]
        .as_str()
        .unwrap()
        .to_string();
    let new_key = keys.iter().find(|key| key["current"] == false).unwrap()["key_id"]
        .as_str()
        .unwrap()
        .to_string();
    let packs_before = listing(&repository.join("packs"));

    std::fs::write(store.join("node0/rotation.marker"), "after the key was added").unwrap();
    let (succeeded, second) = backup(&sandbox);
    assert!(succeeded, "{second}");
    let tree_at_second = hash_tree(&store).unwrap();

    // Switch the worker to the new passphrase: no restart, the file is re-read.
    std::fs::write(&passphrase_file, "second passphrase\n").unwrap();
    let listed = sandbox.bkctl_json(&["repo", "key", "list", "repo"]).unwrap();
    let current: Vec<&str> = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|key| key["current"] == true)
        .map(|key| key["key_id"].as_str().unwrap())
        .collect();
    assert_eq!(current, [new_key.as_str()], "{listed}");
    let refused = sandbox.bkctl(&["repo", "key", "remove", "repo", &new_key]).unwrap();
    assert!(!refused.status.success(), "removed the key the worker's passphrase opens");
    assert!(String::from_utf8_lossy(&refused.stderr)
        .contains("Give the workers the new passphrase first"));
    let removed = sandbox.bkctl_json(&["repo", "key", "remove", "repo", &old_key]).unwrap();
    assert_eq!(removed["keys"].as_array().unwrap().len(), 1, "{removed}");
    let packs_after = listing(&repository.join("packs"));
    assert!(
        packs_before.iter().all(|(pack, size)| packs_after.get(pack) == Some(size)),
        "rotating the passphrase rewrote packs"
    );

    for (job, expected_tree) in [(&first, None), (&second, Some(&tree_at_second))] {
        let backup_id = job["backup_id"].as_str().unwrap();
        let target = sandbox.path().join(format!("restored-{backup_id}"));
        let url = format!("file://{}", target.display());
        run_job(
            &sandbox,
            &["submit", "restore", "--backup", backup_id, "--target", &url, "--nodes-stopped"],
        );
        let exclusions = exclusion_prefixes(&sandbox.bkctl_json(&["show", backup_id]).unwrap());
        match expected_tree {
            Some(tree) => {
                let mut wanted = tree.clone();
                wanted.retain(|key, _| !exclusions.iter().any(|prefix| key.starts_with(prefix)));
                assert_eq!(hash_tree(&target).unwrap(), wanted);
            }
            None => assert!(!target.join("node0/rotation.marker").exists()),
        }
    }
    // The old passphrase opens nothing any more.
    std::fs::write(&passphrase_file, "first passphrase\n").unwrap();
    let (succeeded, job) = backup(&sandbox);
    assert!(!succeeded, "a removed passphrase still opens the repository: {job}");
    assert!(job["error"].as_str().unwrap().contains("does not open"), "{job}");
}

#[test]
fn test_a_format_1_repository_is_refused_and_never_written() {
    let mut sandbox = Sandbox::start().unwrap();
    let store = register_core_source(&sandbox);
    let repository = sandbox.path().join("repository");
    std::fs::create_dir_all(repository.join("chunks/ab")).unwrap();
    std::fs::write(
        repository.join("bk-repository.json"),
        r#"{"format":1,"id":"01OLD","chunk_size":8388608,"hash":"blake3"}"#,
    )
    .unwrap();
    std::fs::write(repository.join("chunks/ab/abcdef"), b"an old chunk").unwrap();
    let before = listing(&repository);
    sandbox.start_worker("core", "node0", &store).unwrap();
    let (succeeded, job) = backup(&sandbox);
    assert!(!succeeded, "a format-1 repository was used: {job}");
    let error = job["error"].as_str().unwrap();
    assert!(
        error.contains("is in format 1")
            && error.contains("reads and writes format 3 only")
            && error.contains("bkctl repo add"),
        "{error}"
    );
    assert_eq!(listing(&repository), before, "bk wrote into a format-1 repository");
}

#[test]
fn test_two_workers_racing_to_create_an_s3_repository_end_with_one() {
    let mut sandbox = Sandbox::start().unwrap();
    let garage_dir = sandbox.path().join("garage");
    let garage = Garage::start(&garage_dir).unwrap();
    let secret_file = garage_dir.join("secret");
    std::fs::write(&secret_file, bk_tests::garage::SECRET_ACCESS_KEY).unwrap();
    let options = garage.options_toml(&secret_file);
    // Two Core nodes (two sources), each with its worker, backing up into one new repository.
    let sources = [("core-a", "a0"), ("core-b", "b0")];
    for (index, (source, node)) in sources.iter().enumerate() {
        let store = sandbox.path().join(format!("store-{source}"));
        let mut params = LayoutParams::core(1 << 20);
        params.seed = index as u64;
        params.data_nodes = vec![node.to_string()];
        generate(&store, &params).unwrap();
        sandbox
            .bkctl_json(&["source", "add", source, "--kind", "influxdb3-core", "--nodes", node])
            .unwrap();
        let tables = format!(
            "[store]\nurl = \"file://{}\"\n{}",
            store.display(),
            (0..3)
                .map(|round| format!("[repositories.race-{round}]\noptions = {options}\n"))
                .collect::<String>()
        );
        sandbox.start_worker_toml(source, node, "", &tables).unwrap();
    }
    let retry = bk_worker::store::RetrySettings::default();
    let mut raced = 0;
    for round in 0..3 {
        let name = format!("race-{round}");
        let url = format!("s3://{BUCKET}/race-{round}");
        sandbox.bkctl_json(&["repo", "add", &name, &url]).unwrap();
        // Both first backups at once: both workers find no config and create one.
        let jobs: Vec<String> = sources
            .iter()
            .map(|(source, _)| {
                let submitted = sandbox
                    .bkctl_json(&["submit", "backup", "--source", source, "--repo", &name])
                    .unwrap();
                submitted["job_id"].as_str().unwrap().to_string()
            })
            .collect();
        for job_id in &jobs {
            let output = sandbox.bkctl(&["-o", "json", "watch", job_id]).unwrap();
            let job: Value = serde_json::from_slice(&output.stdout).unwrap();
            assert!(output.status.success(), "round {round}: {job}");
            raced += usize::from(job.to_string().contains("initialised by two workers at once"));
            let backup_id = job["backup_id"].as_str().unwrap();
            run_job(&sandbox, &["submit", "verify", "--backup", backup_id, "--deep"]);
        }
        let store =
            bk_worker::store::open_store(&url, &garage.options(), &[], &retry, false).unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let (configs, keys) = runtime.block_on(async {
            let configs =
                bk_worker::repository::list_paths(store.as_ref(), "config").await.unwrap();
            let keys = bk_worker::repository::list_paths(store.as_ref(), "keys").await.unwrap();
            (configs, keys)
        });
        assert_eq!(configs.len(), 1, "round {round}: {configs:?}");
        assert_eq!(keys.len(), 1, "round {round}: {keys:?}");
        let recorded = sandbox.bkctl_json(&["repos"]).unwrap();
        let recorded = recorded
            .as_array()
            .unwrap()
            .iter()
            .find(|repository| repository["name"] == name)
            .unwrap()["config_id"]
            .clone();
        assert_eq!(
            recorded,
            configs[0].filename().unwrap(),
            "round {round}: the coordinator records another config"
        );
    }
    eprintln!("rounds in which both workers created a config: {raced} of 3");
}
