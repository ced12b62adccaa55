//! The repository is authenticated everywhere: a byte flipped in a pack, an index, an object
//! list chunk, a manifest or the config, a blob swapped for another valid blob, a pack replaced by one from
//! another repository: `verify --deep` and restore each detect it and name the object, and a
//! restore never writes wrong bytes.

use std::path::{Path, PathBuf};

use bk_tests::tree::{copy_tree, hash_tree};
use serde_json::Value;

use crate::support::{register_core_source, OpenedRepository};
use crate::t06_restore_round_trip::restore;

const VICTIM: &str = "node0/snapshots/18446744073709551614.info.json";

/// The first file under `dir` (its subdirectories included), in path order.
fn only_file_under(dir: &Path) -> PathBuf {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(dir).unwrap().map(|entry| entry.unwrap().path()).collect();
    files.sort();
    let first = files.remove(0);
    if first.is_dir() {
        only_file_under(&first)
    } else {
        first
    }
}

fn flip_byte(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x5A;
    std::fs::write(path, bytes).unwrap();
}

/// Damages the repository at the path; returns the object that must not be restored, if one
/// object is what is damaged.
type Apply = Box<dyn Fn(&Path, &OpenedRepository, &Setup) -> Option<String>>;

/// One way the repository gets damaged, and what verify and restore must name.
struct Damage {
    what: &'static str,
    apply: Apply,
    /// Said by verify's problems (or its error) and by the restore's error.
    named: &'static str,
}

struct Setup {
    cluster: crate::support::Cluster,
    backup_id: String,
    /// A backup of the same source in another repository (other keys).
    other_repository: PathBuf,
}

fn verify(setup: &Setup, deep: bool) -> (bool, String) {
    let mut args = vec!["-o", "json", "submit", "verify", "--backup", &setup.backup_id, "--wait"];
    if deep {
        args.push("--deep");
    }
    let output = setup.cluster.sandbox.bkctl(&args).unwrap();
    let job: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    let said = format!("{} {}", job["error"], job["phases"][0]["tasks"][0]["problems"]);
    (output.status.success(), said)
}

fn damages() -> Vec<Damage> {
    let blob_of = |repository: &OpenedRepository, setup: &Setup, key: &str| -> String {
        let (_, entries) = repository.backup(&setup.backup_id);
        entries[key]["blobs"][0].as_str().unwrap().to_string()
    };
    vec![
        Damage {
            what: "a byte flipped inside a blob of a pack",
            apply: Box::new(move |root, repository, setup| {
                let (pack, range) = repository.blob_location(&blob_of(repository, setup, VICTIM));
                flip_byte(&root.join(pack), range.start + range.len() / 2);
                Some(VICTIM.to_string())
            }),
            named: VICTIM,
        },
        Damage {
            what: "a byte flipped in the index",
            apply: Box::new(|root, _, _| {
                flip_byte(&only_file_under(&root.join("index/node-node0")), 30);
                None
            }),
            named: "index/node-node0/",
        },
        Damage {
            what: "a byte flipped in an object list chunk",
            apply: Box::new(|root, repository, setup| {
                let files = repository.list_files(&setup.backup_id);
                assert_eq!(files.len(), 1, "the test wants one chunk file: {files:?}");
                flip_byte(&root.join(files.first().unwrap()), 40);
                None
            }),
            named: "lists/",
        },
        Damage {
            what: "a byte flipped in the manifest",
            apply: Box::new(|root, _, setup| {
                flip_byte(&root.join(format!("backups/{}/manifest", setup.backup_id)), 20);
                None
            }),
            named: "/manifest",
        },
        Damage {
            what: "a byte flipped in the config",
            apply: Box::new(|root, _, _| {
                flip_byte(&only_file_under(&root.join("config")), 25);
                None
            }),
            named: "config/",
        },
        Damage {
            what: "two blobs swapped",
            apply: Box::new(|root, repository, setup| {
                // Two WAL files of one size: their sealed blobs are as long as each other.
                let (_, entries) = repository.backup(&setup.backup_id);
                let wal: Vec<&Value> = entries
                    .iter()
                    .filter(|(key, _)| key.starts_with("node0/wal/"))
                    .map(|(_, entry)| entry)
                    .collect();
                let (first, second) = (wal[0], wal[1]);
                let locate =
                    |entry: &Value| repository.blob_location(entry["blobs"][0].as_str().unwrap());
                let ((pack_a, a), (pack_b, b)) = (locate(first), locate(second));
                assert_eq!(a.len(), b.len());
                let (bytes_a, bytes_b) = (
                    std::fs::read(root.join(&pack_a)).unwrap(),
                    std::fs::read(root.join(&pack_b)).unwrap(),
                );
                let (blob_a, blob_b) = (bytes_a[a.clone()].to_vec(), bytes_b[b.clone()].to_vec());
                let mut patched_a = std::fs::read(root.join(&pack_a)).unwrap();
                patched_a[a].copy_from_slice(&blob_b);
                std::fs::write(root.join(&pack_a), patched_a).unwrap();
                let mut patched_b = std::fs::read(root.join(&pack_b)).unwrap();
                patched_b[b].copy_from_slice(&blob_a);
                std::fs::write(root.join(&pack_b), patched_b).unwrap();
                Some(first["key"].as_str().unwrap().to_string())
            }),
            named: "node0/wal/",
        },
        Damage {
            what: "a pack replaced by one from another repository",
            apply: Box::new(move |root, repository, setup| {
                let (pack, _) = repository.blob_location(&blob_of(repository, setup, VICTIM));
                let foreign = OpenedRepository::open(&setup.other_repository);
                let (other_backup, other_entries) = {
                    let backups: Vec<PathBuf> =
                        std::fs::read_dir(setup.other_repository.join("backups"))
                            .unwrap()
                            .map(|entry| entry.unwrap().path())
                            .collect();
                    let id = backups[0].file_name().unwrap().to_string_lossy().to_string();
                    let (_, entries) = foreign.backup(&id);
                    (id, entries)
                };
                let (foreign_pack, _) =
                    foreign.blob_location(other_entries[VICTIM]["blobs"][0].as_str().unwrap());
                assert!(!other_backup.is_empty());
                std::fs::copy(setup.other_repository.join(foreign_pack), root.join(&pack)).unwrap();
                Some(VICTIM.to_string())
            }),
            named: "packs/",
        },
    ]
}

#[test]
fn test_every_kind_of_tampering_is_named_by_deep_verify_and_restore_writes_nothing_wrong() {
    let sandbox = bk_tests::sandbox::Sandbox::start().unwrap();
    let store = register_core_source(&sandbox);
    // Enough other objects on the node that its list of them is a chunk file of its own (a few
    // hundred entries; fewer travel inline in the manifest).
    for number in 0..400 {
        let path = store.join(format!("node0/extra/file-{number:04}"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, format!("extra {number}")).unwrap();
    }
    let repository = sandbox.path().join("repository");
    let other_repository = sandbox.path().join("other-repository");
    let url = format!("file://{}", other_repository.display());
    sandbox.bkctl_json(&["repo", "add", "other", &url]).unwrap();
    let mut cluster = crate::support::Cluster {
        sandbox,
        params: bk_tests::layout::LayoutParams::core(1 << 20),
        generated: Default::default(),
        store: store.clone(),
        repository: repository.clone(),
    };
    cluster.sandbox.start_worker("core", "node0", &store).unwrap();
    let backup = |repo: &str| {
        let job = crate::support::run_job(
            &cluster.sandbox,
            &["submit", "backup", "--source", "core", "--repo", repo],
        );
        job["backup_id"].as_str().unwrap().to_string()
    };
    let backup_id = backup("repo");
    backup("other");
    let setup = Setup { cluster, backup_id, other_repository };
    let (intact, said) = verify(&setup, true);
    assert!(intact, "deep verify of an intact backup failed: {said}");
    let pristine = setup.cluster.sandbox.path().join("pristine");
    copy_tree(&repository, &pristine).unwrap();
    let mut setup = setup;
    for (case, damage) in damages().into_iter().enumerate() {
        let opened = OpenedRepository::open(&repository);
        let victim = (damage.apply)(&repository, &opened, &setup);
        // A fresh worker: nothing it read before the damage (keys, its local index) hides it.
        setup.cluster.sandbox.kill_worker("node0");
        let cache = setup.cluster.sandbox.path().join("cache-node0");
        std::fs::remove_dir_all(&cache).unwrap_or_default();
        setup.cluster.sandbox.start_worker("core", "node0", &store).unwrap();
        let (succeeded, said) = verify(&setup, true);
        assert!(!succeeded, "{}: deep verify passed", damage.what);
        assert!(
            said.contains(damage.named),
            "{}: verify did not name `{}`: {said}",
            damage.what,
            damage.named
        );
        let target = setup.cluster.sandbox.path().join(format!("restored-{case}"));
        let (restored, job) =
            restore(&setup.cluster, &setup.backup_id, &target, &["--nodes-stopped"]);
        assert!(!restored, "{}: restore succeeded", damage.what);
        let error = job["error"].to_string();
        assert!(
            error.contains(damage.named),
            "{}: restore did not name `{}`: {error}",
            damage.what,
            damage.named
        );
        if let Some(victim) = victim {
            assert!(
                !target.join(&victim).exists(),
                "{}: the damaged `{victim}` was written",
                damage.what
            );
        }
        if target.exists() {
            let source = hash_tree(&store).unwrap();
            for (key, value) in hash_tree(&target).unwrap() {
                assert_eq!(
                    source.get(&key),
                    Some(&value),
                    "{}: `{key}` restored wrong",
                    damage.what
                );
            }
        }
        std::fs::remove_dir_all(&repository).unwrap();
        copy_tree(&pristine, &repository).unwrap();
    }
}

#[test]
fn test_a_missing_pack_is_reported_by_verify_naming_an_object() {
    let sandbox = bk_tests::sandbox::Sandbox::start().unwrap();
    let store = register_core_source(&sandbox);
    let repository = sandbox.path().join("repository");
    let mut sandbox = sandbox;
    sandbox.start_worker("core", "node0", &store).unwrap();
    let job = crate::support::run_job(
        &sandbox,
        &["submit", "backup", "--source", "core", "--repo", "repo"],
    );
    let backup_id = job["backup_id"].as_str().unwrap();
    let opened = OpenedRepository::open(&repository);
    let (_, entries) = opened.backup(backup_id);
    let (pack, _) = opened.blob_location(entries[VICTIM]["blobs"][0].as_str().unwrap());
    std::fs::remove_file(repository.join(&pack)).unwrap();
    for deep in [false, true] {
        let mut args = vec!["-o", "json", "submit", "verify", "--backup", backup_id, "--wait"];
        if deep {
            args.push("--deep");
        }
        let output = sandbox.bkctl(&args).unwrap();
        assert!(!output.status.success(), "deep={deep}: verify missed a missing pack");
        let job: Value = serde_json::from_slice(&output.stdout).unwrap();
        let problems = job["phases"][0]["tasks"][0]["problems"].to_string();
        assert!(
            problems.contains(&format!("pack `{}`", pack.display()))
                && problems.contains("is missing"),
            "deep={deep}: {problems}"
        );
        assert!(problems.contains("object `node0/"), "deep={deep}: no object named: {problems}");
    }
}

/// Runs `bkctl -o json repo check repo --read-data PERCENT`: (exit success, its JSON as text).
fn repo_check(sandbox: &bk_tests::sandbox::Sandbox, percent: &str) -> (bool, Value) {
    let output =
        sandbox.bkctl(&["-o", "json", "repo", "check", "repo", "--read-data", percent]).unwrap();
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("no JSON: {}", String::from_utf8_lossy(&output.stderr)));
    (output.status.success(), report)
}

/// Files under `dir`, relative to it.
fn files_under(dir: &Path) -> std::collections::BTreeSet<String> {
    hash_tree(dir).map(|tree| tree.into_keys().collect()).unwrap_or_default()
}

#[test]
fn test_repo_check_passes_a_sound_repository_and_names_each_damage() {
    let mut sandbox = bk_tests::sandbox::Sandbox::start().unwrap();
    let store = register_core_source(&sandbox);
    let repository = sandbox.path().join("repository");
    sandbox.start_worker("core", "node0", &store).unwrap();
    let backup = |sandbox: &bk_tests::sandbox::Sandbox| {
        let job = crate::support::run_job(
            sandbox,
            &["submit", "backup", "--source", "core", "--repo", "repo", "--full"],
        );
        job["backup_id"].as_str().unwrap().to_string()
    };
    let backup_id = backup(&sandbox);
    let (sound, report) = repo_check(&sandbox, "100");
    assert!(sound, "a sound repository failed its check: {report}");
    let events = report["events"].to_string();
    assert!(events.contains("every header read") && events.contains("1 backup(s)"), "{events}");
    assert!(events.contains("read 100% of the data"), "{events}");

    // A backup that died after uploading its packs, before its index and manifest: its packs
    // are in no index. Not a problem: reported, and prune's to delete.
    let index_before = files_under(&repository.join("index"));
    std::fs::write(store.join("node0/extra-file"), vec![7u8; 300_000]).unwrap();
    let dead = backup(&sandbox);
    for name in files_under(&repository.join("index")).difference(&index_before) {
        std::fs::remove_file(repository.join("index").join(name)).unwrap();
    }
    std::fs::remove_dir_all(repository.join("backups").join(&dead)).unwrap();
    let (sound, report) = repo_check(&sandbox, "0");
    assert!(sound, "packs in no index are not a problem: {report}");
    assert!(report["warnings"].to_string().contains("are in no index"), "{report}");
    let pristine = sandbox.path().join("pristine");
    copy_tree(&repository, &pristine).unwrap();

    // A truncated index file: named, and the backup whose blobs it listed.
    let index_file = only_file_under(&repository.join("index"));
    let bytes = std::fs::read(&index_file).unwrap();
    std::fs::write(&index_file, &bytes[..bytes.len() / 2]).unwrap();
    let (sound, report) = repo_check(&sandbox, "0");
    assert!(!sound, "a truncated index passed: {report}");
    let problems = report["problems"].to_string();
    let relative = index_file.strip_prefix(&repository).unwrap().display().to_string();
    assert!(problems.contains(&format!("index file `{relative}` cannot be read")), "{problems}");
    assert!(problems.contains(&format!("backup {backup_id} names")), "{problems}");

    // A missing pack: named, with the backup that needs it.
    std::fs::remove_dir_all(&repository).unwrap();
    copy_tree(&pristine, &repository).unwrap();
    let opened = OpenedRepository::open(&repository);
    let (_, entries) = opened.backup(&backup_id);
    let (pack, _) = opened.blob_location(entries[VICTIM]["blobs"][0].as_str().unwrap());
    std::fs::remove_file(repository.join(&pack)).unwrap();
    let (sound, report) = repo_check(&sandbox, "0");
    assert!(!sound, "a missing pack passed: {report}");
    let problems = report["problems"].to_string();
    assert!(problems.contains(&format!("pack `{}` is missing", pack.display())), "{problems}");
    assert!(problems.contains(&format!("backup {backup_id} needs")), "{problems}");

    // A damaged pack body: only reading the data finds it.
    std::fs::remove_dir_all(&repository).unwrap();
    copy_tree(&pristine, &repository).unwrap();
    flip_byte(&repository.join(&pack), 10);
    let (sound, _) = repo_check(&sandbox, "0");
    assert!(sound, "headers only: a damaged blob body is not read");
    let (sound, report) = repo_check(&sandbox, "100");
    assert!(!sound, "--read-data 100 missed a damaged blob: {report}");
}
