use std::collections::BTreeMap;

use bk_proto::ids::{BackupId, JobId, TaskSlot};
use bk_proto::model::TaskKind;
use ulid::Ulid;

use super::*;
use crate::core::domain::{Repository, Source};
use crate::core::plan::{plan_backup, BackupOptions};

fn enterprise(data_nodes: &[&str], compactor: &str) -> Source {
    Source {
        name: "prod".into(),
        spec: SourceSpec::InfluxDb3Enterprise {
            cluster_id: "cluster1".to_string(),
            compactor_node: compactor.to_string(),
            data_nodes: data_nodes.iter().map(|node| node.to_string()).collect(),
            http_endpoints: BTreeMap::new(),
        },
    }
}

fn repository() -> Repository {
    Repository::new("repo", "file:///backups", 1 << 20)
}

fn plan(source: &Source) -> Result<JobSpec, PlanError> {
    plan_backup(
        source,
        &repository(),
        JobId(Ulid::from_parts(1, 1)),
        BackupId(Ulid::from_parts(2, 2)),
        5,
        &BackupOptions::default(),
    )
}

/// `(phase name, [(label, placement)])` of a plan, for compact assertions.
fn outline(spec: &JobSpec) -> Vec<(String, Vec<(String, Placement)>)> {
    spec.phases
        .iter()
        .map(|phase| {
            let tasks = phase
                .tasks
                .iter()
                .map(|task| (task.label.clone(), task.placement.clone()))
                .collect();
            (phase.name.clone(), tasks)
        })
        .collect()
}

fn on(node: &str) -> Placement {
    Placement::Node(node.to_string())
}

#[test]
fn test_enterprise_plan_follows_the_stage_order() {
    let spec = plan(&enterprise(&["node1", "node2"], "compactor")).unwrap();
    let names: Vec<&str> = spec.phases.iter().map(|phase| phase.name.as_str()).collect();
    assert_eq!(names, ["compactor", "nodes", "catalog", "licence", "commit"]);
    let outline = outline(&spec);
    assert_eq!(
        outline[0].1,
        vec![
            ("copy compactor/cs/".to_string(), on("compactor")),
            ("copy compactor/cd/".to_string(), on("compactor")),
            ("copy compactor/c/".to_string(), on("compactor")),
        ]
    );
    let expected_nodes: Vec<(String, Placement)> = ["node1", "node2", "compactor"]
        .iter()
        .flat_map(|node| {
            vec![
                (format!("copy {node}/wal/"), on(node)),
                (format!("copy {node}/snapshots/"), on(node)),
                (format!("copy {node}/dbs/"), on(node)),
                (format!("copy other objects under {node}/"), on(node)),
                (format!("check {node} is consistent (WAL after the newest snapshot, parquet it names)"), on(node)),
            ]
        })
        .collect();
    assert_eq!(outline[1].1, expected_nodes);
    assert_eq!(
        outline[2].1,
        vec![("copy catalog under cluster1/".to_string(), Placement::AnyNode)]
    );
    assert_eq!(outline[3].1[0].1, Placement::AnyNode);
    assert_eq!(spec.nodes, ["node1", "node2", "compactor"]);
}

#[test]
fn test_catch_all_task_excludes_what_other_tasks_copy_and_records_table_snapshots() {
    let spec = plan(&enterprise(&["node1"], "compactor")).unwrap();
    let catch_all = |node: &str| {
        spec.phases[1]
            .tasks
            .iter()
            .find(|task| task.label == format!("copy other objects under {node}/"))
            .map(|task| task.kind.clone())
            .unwrap()
    };
    let TaskKind::CopyPrefix { prefix, exclude, .. } = catch_all("compactor") else {
        panic!("not a copy")
    };
    assert_eq!(prefix, "compactor/");
    let silent: Vec<&str> =
        exclude.iter().filter(|rule| !rule.record).map(|rule| rule.prefix.as_str()).collect();
    assert_eq!(
        silent,
        [
            "compactor/wal/",
            "compactor/snapshots/",
            "compactor/dbs/",
            "compactor/cs/",
            "compactor/cd/",
            "compactor/c/"
        ]
    );
    let recorded: Vec<&str> =
        exclude.iter().filter(|rule| rule.record).map(|rule| rule.prefix.as_str()).collect();
    assert_eq!(recorded, ["compactor/table-snapshots/"]);
    let TaskKind::CopyPrefix { exclude, .. } = catch_all("node1") else { panic!("not a copy") };
    assert!(!exclude.iter().any(|rule| rule.prefix == "node1/cs/"), "only the compactor skips cs/");
}

#[test]
fn test_each_node_is_checked_after_its_own_copy_tasks_and_before_the_barrier() {
    let spec = plan(&enterprise(&["node1", "node2"], "compactor")).unwrap();
    let nodes = &spec.phases[1];
    for (position, task) in nodes.tasks.iter().enumerate() {
        let TaskKind::CheckNodeConsistency { node, parts, .. } = &task.kind else {
            continue;
        };
        let first = position as u32 - 4;
        assert_eq!(task.depends_on, (first..first + 4).collect::<Vec<_>>(), "{node}");
        for (part, index) in parts.iter().zip(first..) {
            assert_eq!(part.task_id.slot, TaskSlot::Phase { phase: 1, index });
            let TaskKind::CopyPrefix { node: copied, .. } = &nodes.tasks[index as usize].kind
            else {
                panic!()
            };
            assert_eq!(copied, node, "a node's check reads only that node's copies");
        }
    }
}

#[test]
fn test_commit_lists_every_copy_task_in_phase_order() {
    let spec = plan(&enterprise(&["node1"], "compactor")).unwrap();
    let commit = &spec.phases.last().unwrap().tasks[0];
    let TaskKind::CommitBackup { parts, .. } = &commit.kind else { panic!("not a commit") };
    let copy_tasks: usize =
        spec.phases[..spec.phases.len() - 1].iter().map(|phase| phase.tasks.len()).sum();
    assert_eq!(parts.len(), copy_tasks);
    assert_eq!(parts[0].task_id.to_string().split('/').nth(1), Some("p0"));
    assert!(matches!(spec.cleanup[0].kind, TaskKind::RemoveStaging));
}

#[test]
fn test_core_plan_has_no_compactor_or_licence_and_leaves_catalog_to_its_phase() {
    let source = Source {
        name: "core".into(),
        spec: SourceSpec::InfluxDb3Core { node: "node0".to_string(), http_endpoint: None },
    };
    let spec = plan(&source).unwrap();
    let names: Vec<&str> = spec.phases.iter().map(|phase| phase.name.as_str()).collect();
    assert_eq!(names, ["nodes", "catalog", "commit"]);
    let TaskKind::CopyPrefix { exclude, .. } = &spec.phases[0].tasks[3].kind else {
        panic!("not a copy")
    };
    assert!(exclude.iter().any(|rule| rule.prefix == "node0/catalog/" && !rule.record));
    let TaskKind::CopyCatalog { catalog_prefix, .. } = &spec.phases[1].tasks[0].kind else {
        panic!()
    };
    assert_eq!(catalog_prefix, "node0/");
}

#[test]
fn test_invalid_topologies_are_refused_with_the_reason() {
    let cases: Vec<(Source, &str)> = vec![
        (enterprise(&[], "compactor"), "no data node given"),
        (enterprise(&["node1", "node1"], "compactor"), "`node1` is used twice"),
        (enterprise(&["compactor"], "compactor"), "both the compactor and a data node"),
        (enterprise(&["a/b"], "compactor"), "`a/b` is not a valid node"),
        (enterprise(&["cluster1"], "compactor"), "`cluster1` is used twice"),
        (enterprise(&["node1"], ""), "`` is not a valid"),
    ];
    for (source, expected) in cases {
        let error = plan(&source).unwrap_err().to_string();
        assert!(error.contains(expected), "expected `{expected}` in `{error}`");
    }
}

#[test]
fn test_nodes_whose_workers_snapshot_are_snapshotted_first_and_deleted_in_cleanup() {
    let source = enterprise(&["node1", "node2"], "compactor");
    // (case, nodes whose workers registered `[snapshot]`, snapshot tasks expected)
    let cases: [(&str, &[&str], &[&str]); 3] = [
        ("none", &[], &[]),
        ("some, plus a node of another source", &["node2", "elsewhere"], &["node2"]),
        ("all", &["compactor", "node1", "node2"], &["node1", "node2", "compactor"]),
    ];
    for (case, registered, expected) in cases {
        let options = BackupOptions {
            snapshot_nodes: registered.iter().map(|node| node.to_string()).collect(),
            ..BackupOptions::default()
        };
        let spec = plan_backup(
            &source,
            &repository(),
            JobId(Ulid::from_parts(1, 1)),
            BackupId(Ulid::from_parts(2, 2)),
            5,
            &options,
        )
        .unwrap();
        let snapshots: Vec<String> = spec.phases[0]
            .tasks
            .iter()
            .filter_map(|task| match &task.kind {
                TaskKind::TakeSnapshot { node } => Some(node.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(snapshots, expected, "{case}");
        let deletes: Vec<&PlannedTask> = spec
            .cleanup
            .iter()
            .filter(|task| matches!(task.kind, TaskKind::DeleteSnapshot { .. }))
            .collect();
        assert_eq!(deletes.len(), expected.len(), "{case}");
        assert!(deletes.iter().all(|task| task.retry_until_success), "{case}");
        let remove = spec.cleanup.last().unwrap();
        assert!(matches!(remove.kind, TaskKind::RemoveStaging), "{case}");
        assert_eq!(
            remove.depends_on.len(),
            expected.len(),
            "{case}: staging goes after the deletes"
        );
        // The commit reads staging parts of copy tasks only, never of a snapshot task.
        let commit = &spec.phases.last().unwrap().tasks[0];
        let TaskKind::CommitBackup { parts, .. } = &commit.kind else { panic!("not a commit") };
        let first_copy_phase = if expected.is_empty() { "p0" } else { "p1" };
        assert_eq!(
            parts[0].task_id.to_string().split('/').nth(1),
            Some(first_copy_phase),
            "{case}"
        );
    }
}
