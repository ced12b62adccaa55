//! Every catalog layout is found and backed up; no catalog at all fails the job and commits
//! nothing.

use bk_tests::layout::{CatalogFlavor, LayoutParams};

use crate::support::{read_backup_entries, Cluster};

fn backup_with_catalog(flavor: CatalogFlavor) -> (Cluster, bool, serde_json::Value) {
    let mut params = LayoutParams::enterprise(1 << 20);
    params.catalog = flavor;
    let mut cluster = Cluster::new(params);
    cluster.start_all_workers();
    let (succeeded, job) = cluster.backup();
    (cluster, succeeded, job)
}

#[test]
fn test_v1_and_v2_catalogs_are_detected_and_copied() {
    for (flavor, name, image) in [
        (CatalogFlavor::V1, "v1", "cluster1/_catalog_checkpoint"),
        (CatalogFlavor::V2, "v2", "cluster1/catalog/v2/snapshot"),
    ] {
        let (cluster, succeeded, job) = backup_with_catalog(flavor);
        assert!(succeeded, "{name}: backup failed: {job}");
        let backup_id = job["backup_id"].as_str().unwrap();
        let backup = cluster.sandbox.bkctl_json(&["show", backup_id]).unwrap();
        assert_eq!(backup["catalog_format"], name);
        let (_, entries) = read_backup_entries(&cluster.repository, backup_id);
        assert!(entries.contains_key(image), "{name}: catalog image `{image}` missing");
        assert!(entries.contains_key("cluster1/enterprise"));
        // The newest log's sequence, read from its name (`…/<seq:020>.catalog`) in both layouts.
        let newest = entries
            .keys()
            .filter_map(|key| key.rsplit('/').next()?.strip_suffix(".catalog")?.parse::<u64>().ok())
            .max()
            .unwrap();
        assert_eq!(backup["catalog_sequence"], newest, "{name}: {backup}");
    }
}

#[test]
fn test_cluster_without_catalog_fails_clearly_and_commits_nothing() {
    let (cluster, succeeded, job) = backup_with_catalog(CatalogFlavor::None);
    assert!(!succeeded, "a backup without a catalog must fail: {job}");
    assert_eq!(job["state"], "failed");
    let error = job["error"].as_str().unwrap();
    assert!(error.contains("no InfluxDB 3 catalog found under `cluster1/`"), "{error}");
    let backups = cluster.sandbox.bkctl_json(&["backups"]).unwrap();
    assert_eq!(backups.as_array().unwrap().len(), 0, "a failed job committed a backup: {backups}");
    assert!(
        !cluster.repository.join("backups").exists(),
        "a manifest was written for a failed job"
    );
    assert!(!cluster.repository.join("staging").exists(), "cleanup did not remove staging");
}
