use std::collections::{BTreeMap, BTreeSet};

use bk_proto::ids::BackupId;
use bk_proto::model::TaskKind;
use ulid::Ulid;

use super::*;
use crate::core::domain::PhaseSummary;
use crate::core::job::{JobKind, Placement};

fn backup(spec: SourceSpec) -> BackupRecord {
    let phase = |name: &str| PhaseSummary {
        name: name.into(),
        started_at_ms: 0,
        finished_at_ms: 0,
        num_objects: 0,
        num_bytes: 0,
    };
    let mut record = BackupRecord::fixture(BackupId(Ulid::from_parts(1, 1)), "prod", 0, Some(spec));
    record.catalog_format = Some(bk_proto::model::CatalogFormat::V3);
    record.phases = vec![phase("compactor"), phase("nodes"), phase("catalog"), phase("licence")];
    record
}

fn enterprise(endpoints: &[(&str, &str)]) -> SourceSpec {
    SourceSpec::InfluxDb3Enterprise {
        cluster_id: "cluster1".into(),
        compactor_node: "compactor".into(),
        data_nodes: vec!["node1".into(), "node2".into()],
        http_endpoints: endpoints
            .iter()
            .map(|(node, url)| (node.to_string(), url.to_string()))
            .collect(),
    }
}

fn repository() -> Repository {
    Repository::new("repo", "file:///r", 1 << 20)
}

fn request(wipe: bool) -> RestoreRequest {
    RestoreRequest {
        default_target: Some("file:///t".into()),
        nodes_stopped: true,
        wipe,
        ..RestoreRequest::default()
    }
}

fn names(spec: &JobSpec) -> Vec<&str> {
    spec.phases.iter().map(|phase| phase.name.as_str()).collect()
}

#[test]
fn test_restore_runs_the_stages_in_reverse_behind_guards() {
    let workers: BTreeSet<String> =
        ["node1", "node2", "compactor"].iter().map(|node| node.to_string()).collect();
    let spec =
        plan_restore(&backup(enterprise(&[])), &repository(), &request(false), &workers).unwrap();
    assert_eq!(names(&spec), ["preflight", "catalog", "licence", "nodes", "compactor"]);
    let spec =
        plan_restore(&backup(enterprise(&[])), &repository(), &request(true), &workers).unwrap();
    assert_eq!(names(&spec), ["preflight", "wipe", "catalog", "licence", "nodes", "compactor"]);
    // Preflight: one check per node, one for the cluster prefixes, one existence check of the backup.
    let preflight = &spec.phases[0].tasks;
    assert_eq!(preflight.len(), 5);
    assert!(matches!(preflight[4].kind, TaskKind::VerifyBackup { deep: false, .. }));
    let TaskKind::CheckRestoreTarget { prefixes, allow_existing, .. } = &preflight[3].kind else {
        panic!()
    };
    assert!(
        prefixes.contains(&"cluster1/catalog/".to_string())
            && prefixes.contains(&"cluster1/commercial_license".to_string())
    );
    assert!(*allow_existing, "--wipe expects existing objects");
    assert_eq!(spec.phases[4].tasks[0].placement, Placement::Node("node1".into()));
    assert!(spec.cleanup.is_empty());
}

#[test]
fn test_nodes_without_a_worker_are_restored_by_any_worker() {
    let workers: BTreeSet<String> = ["node1"].iter().map(|node| node.to_string()).collect();
    let spec =
        plan_restore(&backup(enterprise(&[])), &repository(), &request(false), &workers).unwrap();
    let placements: Vec<&Placement> =
        spec.phases[3].tasks.iter().map(|task| &task.placement).collect();
    assert_eq!(
        placements,
        [&Placement::Node("node1".into()), &Placement::AnyNode, &Placement::AnyNode]
    );
}

#[test]
fn test_per_node_targets_override_the_default() {
    let mut request = request(false);
    request.node_targets = BTreeMap::from([("node2".to_string(), "s3://other".to_string())]);
    let spec =
        plan_restore(&backup(enterprise(&[])), &repository(), &request, &BTreeSet::new()).unwrap();
    let targets: Vec<String> = spec.phases[3]
        .tasks
        .iter()
        .map(|task| match &task.kind {
            TaskKind::RestoreObjects { target_url, .. } => target_url.clone(),
            _ => panic!("not a restore task"),
        })
        .collect();
    assert_eq!(targets, ["file:///t", "s3://other", "file:///t"]);
}

#[test]
fn test_refusals_name_the_fix() {
    let no_stop =
        RestoreRequest { default_target: Some("file:///t".into()), ..RestoreRequest::default() };
    let both = RestoreRequest { wipe: true, resume: true, ..request(false) };
    let no_target = RestoreRequest { nodes_stopped: true, ..RestoreRequest::default() };
    let half_endpoints = backup(enterprise(&[("node1", "http://n1:8181")]));
    let cases: Vec<(BackupRecord, RestoreRequest, &str)> = vec![
        (backup(enterprise(&[])), no_stop.clone(), "pass `--nodes-stopped`"),
        (half_endpoints, no_stop, "`node2`, `compactor` have no HTTP endpoint"),
        (backup(enterprise(&[])), both, "exclude each other"),
        (backup(enterprise(&[])), no_target, "no target for `cluster`"),
    ];
    for (backup, request, expected) in cases {
        let error = plan_restore(&backup, &repository(), &request, &BTreeSet::new())
            .unwrap_err()
            .to_string();
        assert!(error.contains(expected), "`{expected}` not in `{error}`");
    }
    let all_endpoints =
        enterprise(&[("node1", "http://a"), ("node2", "http://b"), ("compactor", "http://c")]);
    let checked =
        RestoreRequest { default_target: Some("file:///t".into()), ..RestoreRequest::default() };
    assert!(plan_restore(&backup(all_endpoints), &repository(), &checked, &BTreeSet::new()).is_ok());
}

#[test]
fn test_core_restore_has_no_cluster_check_and_puts_the_catalog_under_the_node() {
    let core = SourceSpec::InfluxDb3Core {
        node: "node0".into(),
        http_endpoint: Some("http://n:8181".into()),
    };
    let mut record = backup(core);
    record.phases.retain(|phase| phase.name != "licence" && phase.name != "compactor");
    let request =
        RestoreRequest { default_target: Some("file:///t".into()), ..RestoreRequest::default() };
    let spec = plan_restore(&record, &repository(), &request, &BTreeSet::new()).unwrap();
    assert_eq!(names(&spec), ["preflight", "catalog", "nodes"]);
    assert_eq!(spec.phases[0].tasks.len(), 2);
}

#[test]
fn test_verify_is_one_task_on_any_worker() {
    let spec = plan_verify(&backup(enterprise(&[])), &repository(), true);
    assert_eq!(spec.kind, JobKind::Verify);
    assert!(matches!(spec.phases[0].tasks[0].kind, TaskKind::VerifyBackup { deep: true, .. }));
}
