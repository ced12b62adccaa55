//! Incremental forever, retention and prune: unchanged objects are never read again, every
//! backup in a chain restores whole, and prune never breaks a backup, even one running.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use bk_tests::influx_files::parquet_file;
use bk_tests::layout::LayoutParams;
use bk_tests::live::write_atomically;
use bk_tests::tree::hash_tree;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use serde_json::Value;

use crate::support::{exclusion_prefixes, read_backup_entries, Cluster, OpenedRepository};
use crate::t06_restore_round_trip::{assert_restored_identical, restore};

/// A tree's files: path → (size, BLAKE3).
type Tree = BTreeMap<String, (u64, String)>;

fn show(cluster: &Cluster, job: &Value) -> Value {
    cluster.sandbox.bkctl_json(&["show", job["backup_id"].as_str().unwrap()]).unwrap()
}

fn backup_ok(cluster: &Cluster) -> Value {
    let (succeeded, job) = cluster.backup();
    assert!(succeeded, "backup failed: {job}");
    show(cluster, &job)
}

/// Rewrites every `stride`-th parquet file (from `offset`) with a new body of the same size
/// (still a parquet file: `PAR1` at both ends), written as InfluxDB 3 writes (staging file,
/// rename); returns the bytes changed.
fn change_parquet(store: &Path, stride: usize, offset: usize, seed: u64) -> u64 {
    let tree = hash_tree(store).unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut changed = 0;
    for (index, (key, (size, _))) in
        tree.iter().filter(|(key, _)| key.ends_with(".parquet")).enumerate()
    {
        if index % stride == offset {
            let mut body = vec![0u8; *size as usize - 8];
            rng.fill_bytes(&mut body);
            write_atomically(store, key, &parquet_file(&body)).unwrap();
            changed += size;
        }
    }
    assert!(changed > 0, "nothing changed");
    changed
}

#[test]
fn test_second_backup_of_an_unchanged_cluster_reads_and_writes_nothing() {
    let mut cluster = Cluster::new(LayoutParams::enterprise(4 << 20));
    cluster.start_all_workers();
    let first = backup_ok(&cluster);
    assert_eq!(first["parent_id"], "", "the first backup is full");
    assert!(first["bytes_read"].as_u64().unwrap() > 0);
    let second = backup_ok(&cluster);
    assert_eq!(second["parent_id"], first["id"]);
    assert_eq!(second["bytes_read"], 0, "unchanged objects were read: {second}");
    assert_eq!(second["bytes_written"], 0, "blobs were written for an unchanged cluster: {second}");
    assert_eq!(second["num_objects_reused"], second["num_objects"]);
    let full = {
        let output = cluster
            .sandbox
            .bkctl(&[
                "-o", "json", "submit", "backup", "--source", "src", "--repo", "repo", "--full",
                "--wait",
            ])
            .unwrap();
        assert!(output.status.success());
        show(&cluster, &serde_json::from_slice(&output.stdout).unwrap())
    };
    assert_eq!(full["parent_id"], "", "--full names no parent");
    assert_eq!(full["bytes_read"], first["bytes_read"], "--full reads everything again");
    assert_eq!(full["bytes_written"], 0, "but writes no blob twice (content-addressed)");
}

#[test]
fn test_one_percent_changed_writes_about_the_changed_bytes() {
    let mut cluster = Cluster::new(LayoutParams::enterprise(8 << 20));
    cluster.start_all_workers();
    backup_ok(&cluster);
    let parquet_files =
        hash_tree(&cluster.store).unwrap().keys().filter(|key| key.ends_with(".parquet")).count();
    let objects = hash_tree(&cluster.store).unwrap().len();
    let stride = (parquet_files * 100 / objects).max(2); // About 1 % of all objects.
    let changed = change_parquet(&cluster.store, stride, 0, 99);
    let second = backup_ok(&cluster);
    let written = second["bytes_written"].as_u64().unwrap();
    let read = second["bytes_read"].as_u64().unwrap();
    assert_eq!(read, changed, "only the changed objects are read");
    assert!(
        written as f64 >= changed as f64 * 0.95 && written as f64 <= changed as f64 * 1.05,
        "wrote {written} for {changed} changed bytes"
    );
}

#[test]
fn test_every_backup_in_a_chain_of_five_restores_byte_identical() {
    let mut cluster = Cluster::new(LayoutParams::enterprise(2 << 20));
    cluster.start_all_workers();
    let mut states: Vec<(Value, Tree)> = Vec::new();
    for round in 0..5 {
        if round > 0 {
            change_parquet(&cluster.store, 7, round, round as u64);
            std::fs::write(
                cluster.store.join(format!("node1/extra-{round}.marker")),
                format!("round {round}"),
            )
            .unwrap();
        }
        let backup = backup_ok(&cluster);
        states.push((backup, hash_tree(&cluster.store).unwrap()));
    }
    for (round, (backup, tree)) in states.iter().enumerate() {
        let target = cluster.sandbox.path().join(format!("restored-{round}"));
        let (succeeded, job) =
            restore(&cluster, backup["id"].as_str().unwrap(), &target, &["--nodes-stopped"]);
        assert!(succeeded, "round {round}: restore failed: {job}");
        let mut wanted = tree.clone();
        let excluded = exclusion_prefixes(backup);
        wanted.retain(|key, _| !excluded.iter().any(|prefix| key.starts_with(prefix)));
        assert_eq!(
            hash_tree(&target).unwrap(),
            wanted,
            "round {round}: restore differs from the state it backed up"
        );
    }
}

#[test]
fn test_prune_keeps_exactly_the_right_backups_repacks_and_every_kept_one_restores_whole() {
    let mut cluster = Cluster::new(LayoutParams::enterprise(2 << 20));
    cluster.start_all_workers();
    let mut backups: Vec<(String, Tree)> = Vec::new();
    for round in 0..4 {
        if round > 0 {
            change_parquet(&cluster.store, 5, round, 40 + round as u64);
        }
        let id = backup_ok(&cluster)["id"].as_str().unwrap().to_string();
        backups.push((id, hash_tree(&cluster.store).unwrap()));
    }
    let ids: Vec<String> = backups.iter().map(|(id, _)| id.clone()).collect();
    let pack_bytes = || tree_bytes(&cluster.repository.join("packs"));
    let bytes_before = pack_bytes();
    let prune = |dry_run: bool| submit_prune(&cluster, "2", dry_run);
    let dry = prune(true);
    let sweep = dry["phases"][1]["tasks"][0]["events"][0].as_str().unwrap().to_string();
    assert!(sweep.starts_with("would delete"), "{sweep}");
    assert_eq!(
        cluster.sandbox.bkctl_json(&["backups"]).unwrap().as_array().unwrap().len(),
        4,
        "a dry run forgot backups"
    );
    assert_eq!(pack_bytes(), bytes_before, "a dry run changed packs");

    let pruned = prune(false);
    let sweep = pruned["phases"][1]["tasks"][0]["events"][0].as_str().unwrap().to_string();
    assert!(sweep.contains("did repack") && !sweep.contains("did repack 0 pack"), "{sweep}");
    let kept: Vec<String> = cluster
        .sandbox
        .bkctl_json(&["backups"])
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kept, [ids[3].clone(), ids[2].clone()], "keep-last 2 keeps the two newest");
    assert!(pack_bytes() < bytes_before, "packs only the forgotten backups used were not dropped");
    for forgotten in &ids[..2] {
        let manifest = cluster.repository.join(format!("backups/{forgotten}/manifest"));
        assert!(!manifest.exists(), "a forgotten manifest remains");
    }
    assert_every_list_chunk_is_named(&cluster.repository, &ids[2..]);
    for (id, tree) in &backups[2..] {
        assert_kept_backup_whole(&cluster, id, tree);
    }
}

/// `bkctl submit prune --keep-last N --max-unused 0%`, which must succeed; its job.
fn submit_prune(cluster: &Cluster, keep_last: &str, dry_run: bool) -> Value {
    let mut args = vec!["-o", "json", "submit", "prune", "--repo", "repo", "--source", "src"];
    args.extend(["--keep-last", keep_last, "--max-unused", "0%", "--wait"]);
    if dry_run {
        args.push("--dry-run");
    }
    let output = cluster.sandbox.bkctl(&args).unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
    serde_json::from_slice::<Value>(&output.stdout).unwrap()
}

/// A kept backup passes `verify --deep` and restores to `tree` (less what it excluded).
fn assert_kept_backup_whole(cluster: &Cluster, id: &str, tree: &Tree) {
    let output = cluster
        .sandbox
        .bkctl(&["-o", "json", "submit", "verify", "--backup", id, "--deep", "--wait"])
        .unwrap();
    assert!(
        output.status.success(),
        "kept backup {id} is damaged: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    let target = cluster.sandbox.path().join(format!("restored-{id}"));
    let (succeeded, job) = restore(cluster, id, &target, &["--nodes-stopped"]);
    assert!(succeeded, "{job}");
    let backup = cluster.sandbox.bkctl_json(&["show", id]).unwrap();
    let mut wanted = tree.clone();
    let excluded = exclusion_prefixes(&backup);
    wanted.retain(|key, _| !excluded.iter().any(|prefix| key.starts_with(prefix)));
    assert_eq!(hash_tree(&target).unwrap(), wanted, "kept backup {id} restores differently");
}

/// Every file under the repository's `backups/` is a manifest of `kept`, and every object list
/// chunk under `lists/` is one their manifests name, present: forgetting left no chunk behind,
/// and deleted none still named.
fn assert_every_list_chunk_is_named(repository: &Path, kept: &[String]) {
    let opened = OpenedRepository::open(repository);
    let mut named: BTreeSet<String> = BTreeSet::new();
    for id in kept {
        for file in opened.list_files(id) {
            assert!(repository.join(&file).is_file(), "backup {id} names a deleted chunk {file}");
            named.insert(file);
        }
    }
    let manifests: BTreeSet<String> = kept.iter().map(|id| format!("{id}/manifest")).collect();
    let backups: BTreeSet<String> =
        hash_tree(&repository.join("backups")).unwrap().into_keys().collect();
    assert_eq!(backups, manifests, "files under backups/ beyond the kept manifests");
    let lists = repository.join("lists");
    let chunks: BTreeSet<String> = if lists.exists() {
        hash_tree(&lists).unwrap().into_keys().map(|key| format!("lists/{key}")).collect()
    } else {
        BTreeSet::new()
    };
    let unnamed: Vec<&String> = chunks.difference(&named).collect();
    assert!(unnamed.is_empty(), "chunks no kept backup names: {unnamed:?}");
}

/// The runs of each scope of a manifest (JSON), by scope prefix and node.
fn runs_by_scope(manifest: &Value) -> BTreeMap<String, Vec<Value>> {
    manifest["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|list| {
            let name = format!(
                "{} {} {}",
                list["phase"].as_str().unwrap(),
                list["scope"]["prefix"].as_str().unwrap(),
                list["scope"]["excluded"]
            );
            (name, list["runs"].as_array().unwrap().clone())
        })
        .collect()
}

#[test]
fn test_unchanged_scopes_keep_the_parents_runs_a_change_adds_a_delta_and_both_outlive_forgetting_it(
) {
    let mut cluster = Cluster::new(LayoutParams::enterprise(2 << 20));
    cluster.start_all_workers();
    let first = backup_ok(&cluster)["id"].as_str().unwrap().to_string();
    let second = backup_ok(&cluster)["id"].as_str().unwrap().to_string();
    std::fs::write(cluster.store.join("node1/extra.marker"), "changed").unwrap();
    let third = backup_ok(&cluster)["id"].as_str().unwrap().to_string();
    let tree = hash_tree(&cluster.store).unwrap();
    let (first_manifest, first_entries) = read_backup_entries(&cluster.repository, &first);
    let (second_manifest, second_entries) = read_backup_entries(&cluster.repository, &second);
    let (third_manifest, third_entries) = read_backup_entries(&cluster.repository, &third);
    assert_eq!(second_entries, first_entries, "an unchanged backup lists the same objects");
    let (first_runs, second_runs, third_runs) = (
        runs_by_scope(&first_manifest),
        runs_by_scope(&second_manifest),
        runs_by_scope(&third_manifest),
    );
    // Scopes found by listing keep the parent's runs as they are; those bk finds itself (the
    // catalog, licence files) are written again, as the same content-addressed chunks.
    assert_eq!(second_runs, first_runs, "the unchanged backup wrote object lists again");
    assert!(third_entries.contains_key("node1/extra.marker"), "the change is not in the backup");
    assert_eq!(third_entries.len(), first_entries.len() + 1);
    let changed: Vec<&String> =
        third_runs.keys().filter(|scope| third_runs[*scope] != first_runs[*scope]).collect();
    assert_eq!(changed.len(), 1, "only the changed scope has a new run: {changed:?}");
    let (before, after) = (&first_runs[changed[0]], &third_runs[changed[0]]);
    assert_eq!(after.len(), before.len() + 1, "the change is a delta on the parent's runs");
    assert_eq!(&after[..before.len()], &before[..], "the parent's runs are kept as they are");
    assert_eq!(after[before.len()]["chunks"][0]["num_items"], 1, "the delta holds the change only");

    submit_prune(&cluster, "1", false);
    assert!(!cluster.repository.join(format!("backups/{first}/manifest")).exists());
    assert_every_list_chunk_is_named(&cluster.repository, std::slice::from_ref(&third));
    assert_kept_backup_whole(&cluster, &third, &tree);
}

fn tree_bytes(dir: &Path) -> u64 {
    let mut bytes = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        bytes += if entry.file_type().unwrap().is_dir() {
            tree_bytes(&entry.path())
        } else {
            entry.metadata().unwrap().len()
        };
    }
    bytes
}

#[test]
fn test_prune_submitted_during_a_backup_waits_for_it_and_breaks_nothing() {
    let mut cluster = Cluster::new(LayoutParams::enterprise(6 << 20));
    for node in cluster.nodes() {
        let store = cluster.store.clone();
        cluster
            .sandbox
            .start_worker_with(
                "src",
                &node,
                &store,
                "max_concurrent_objects = 1\nmax_bytes_per_second = 4194304",
            )
            .unwrap();
    }
    backup_ok(&cluster);
    // Interleave a prune at several points of a running backup (each phase in turn).
    for (round, phase) in ["compactor", "nodes", "catalog"].iter().enumerate() {
        change_parquet(&cluster.store, 9, round, 70 + round as u64);
        let submitted = cluster
            .sandbox
            .bkctl_json(&["submit", "backup", "--source", "src", "--repo", "repo"])
            .unwrap();
        let backup_job = submitted["job_id"].as_str().unwrap().to_string();
        cluster
            .sandbox
            .wait_until(Duration::from_secs(60), "the backup to reach the phase", || {
                let job = cluster.sandbox.bkctl_json(&["job", &backup_job]).ok()?;
                let phase_json =
                    job["phases"].as_array()?.iter().find(|p| p["name"] == *phase)?.clone();
                phase_json["tasks"]
                    .as_array()?
                    .iter()
                    .any(|task| task["state"] == "running" || task["state"] == "succeeded")
                    .then_some(())
            })
            .unwrap();
        let prune = cluster
            .sandbox
            .bkctl_json(&[
                "submit",
                "prune",
                "--repo",
                "repo",
                "--source",
                "src",
                "--keep-last",
                "1",
            ])
            .unwrap();
        let prune_job = prune["job_id"].as_str().unwrap().to_string();
        let waiting = cluster.sandbox.bkctl_json(&["job", &prune_job]).unwrap();
        let backup_state =
            cluster.sandbox.bkctl_json(&["job", &backup_job]).unwrap()["state"].clone();
        if backup_state == "running" || backup_state == "queued" {
            let reason =
                waiting["phases"][0]["tasks"][0]["waiting_reason"].as_str().unwrap().to_string();
            assert!(
                reason.contains(&backup_job) && reason.contains("never run together"),
                "round {round}: {reason}"
            );
            assert_eq!(
                waiting["phases"][0]["tasks"][0]["state"], "pending",
                "round {round}: prune ran during a backup"
            );
        }
        let backup = cluster.sandbox.bkctl(&["-o", "json", "watch", &backup_job]).unwrap();
        assert!(
            backup.status.success(),
            "round {round}: the backup broke: {}",
            String::from_utf8_lossy(&backup.stdout)
        );
        let pruned = cluster.sandbox.bkctl(&["-o", "json", "watch", &prune_job]).unwrap();
        assert!(
            pruned.status.success(),
            "round {round}: the prune failed: {}",
            String::from_utf8_lossy(&pruned.stdout)
        );
        let backups = cluster.sandbox.bkctl_json(&["backups"]).unwrap();
        let backups = backups.as_array().unwrap();
        assert_eq!(backups.len(), 1, "round {round}: keep-last 1 after the prune");
        let job: Value = serde_json::from_slice(&backup.stdout).unwrap();
        assert_eq!(
            backups[0]["id"], job["backup_id"],
            "round {round}: the prune forgot the backup it waited for"
        );
        let target = cluster.sandbox.path().join(format!("restored-{round}"));
        let (succeeded, restore_job) =
            restore(&cluster, job["backup_id"].as_str().unwrap(), &target, &["--nodes-stopped"]);
        assert!(succeeded, "round {round}: {restore_job}");
        assert_restored_identical(&cluster.store, &target, &exclusion_prefixes(&backups[0]));
    }
}

/// The runs of the scope whose prefix is `prefix` (and phase `nodes`) in a manifest (JSON).
fn scope_runs(manifest: &Value, prefix: &str) -> Vec<Value> {
    let list = manifest["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|list| list["scope"]["prefix"] == prefix && list["phase"] == "nodes")
        .unwrap_or_else(|| panic!("no scope `{prefix}` in {manifest}"));
    list["runs"].as_array().unwrap().clone()
}

fn run_items(run: &Value) -> u64 {
    run["chunks"].as_array().unwrap().iter().map(|chunk| chunk["num_items"].as_u64().unwrap()).sum()
}

#[test]
fn test_a_changed_scope_writes_a_delta_the_size_of_its_change_and_compacts_into_a_new_base() {
    let mut cluster = Cluster::new(LayoutParams::enterprise(2 << 20));
    // Thousands of other objects on node1: its catch-all scope's base run spans chunk files.
    let store = cluster.store.clone();
    let extra = |number: u64| store.join(format!("node1/extra/{number:06}.bin"));
    for number in 0..6000 {
        std::fs::create_dir_all(extra(number).parent().unwrap()).unwrap();
        std::fs::write(extra(number), format!("object {number}")).unwrap();
    }
    cluster.start_all_workers();
    let first = backup_ok(&cluster);
    let (manifest, _) = read_backup_entries(&cluster.repository, first["id"].as_str().unwrap());
    let base = scope_runs(&manifest, "node1/");
    assert_eq!(base.len(), 1);
    assert!(
        run_items(&base[0]) > 6000 && base[0]["chunks"].as_array().unwrap().len() >= 2,
        "{base:?}"
    );
    let base_bytes = first["list_bytes_written"].as_u64().unwrap();

    // Each round: 10 new objects, 5 deleted, 1 rewritten. The list grows a delta of 16 items
    // per round until the stack is as tall as it may grow; then a new base is written.
    let mut next = 6000;
    let mut runs_seen = Vec::new();
    let mut last = first;
    for round in 0..8u64 {
        for _ in 0..10 {
            std::fs::write(extra(next), format!("object {next}")).unwrap();
            next += 1;
        }
        for gone in 0..5 {
            std::fs::remove_file(extra(round * 5 + gone)).unwrap();
        }
        let rewritten = format!("node1/extra/{:06}.bin", 3000 + round);
        write_atomically(&store, &rewritten, format!("rewritten in round {round}").as_bytes())
            .unwrap();
        last = backup_ok(&cluster);
        let id = last["id"].as_str().unwrap().to_string();
        let (manifest, entries) = read_backup_entries(&cluster.repository, &id);
        let runs = scope_runs(&manifest, "node1/");
        runs_seen.push(runs.len());
        let tree = hash_tree(&cluster.store).unwrap();
        let listed: BTreeSet<&String> = entries.keys().collect();
        let present: BTreeSet<&String> =
            tree.keys().filter(|key| !key.contains("table-snapshots")).collect();
        assert_eq!(
            listed, present,
            "round {round}: the backup lists other objects than the node holds"
        );
        if runs.len() > 1 {
            assert_eq!(
                run_items(runs.last().unwrap()),
                16,
                "round {round}: the delta is not the change"
            );
            assert_eq!(&runs[0], &base[0], "round {round}: the base was rewritten");
            let written = last["list_bytes_written"].as_u64().unwrap();
            assert!(written * 20 < base_bytes, "round {round}: {written} bytes of lists for a 16-object change (base {base_bytes})");
        }
    }
    assert_eq!(runs_seen[..7], [2, 3, 4, 5, 6, 7, 8], "a delta per round: {runs_seen:?}");
    assert_eq!(
        runs_seen[7], 1,
        "the eighth delta would exceed the stack: a new base, {runs_seen:?}"
    );

    // The newest backup (a new base) restores whole; a prune down to it leaves exactly its
    // chunks, and it still verifies and restores.
    let target = cluster.sandbox.path().join("restored-newest");
    let (succeeded, job) =
        restore(&cluster, last["id"].as_str().unwrap(), &target, &["--nodes-stopped"]);
    assert!(succeeded, "{job}");
    assert_restored_identical(&cluster.store, &target, &exclusion_prefixes(&last));
    submit_prune(&cluster, "1", false);
    let kept = last["id"].as_str().unwrap().to_string();
    assert_every_list_chunk_is_named(&cluster.repository, std::slice::from_ref(&kept));
    assert_kept_backup_whole(&cluster, &kept, &hash_tree(&cluster.store).unwrap());
}
