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
