//! JSON written by the task model of 2026-12 (`fixtures/task-json-2026-12.json`) still reads,
//! to the same values. The model travels inside the replicated job state and between versions
//! of the coordinator and the workers, so a renamed field, a changed tag or a new field
//! without a default breaks a running cluster's upgrade: this test breaks first.
//!
//! The fixture is frozen: never rewrite it. A format that must change gets a new fixture next
//! to this one, and this one keeps reading.

use std::str::FromStr;

use serde_json::Value;
use ulid::Ulid;

use crate::ids::{BackupId, TaskId};
use crate::model::*;

const FIXTURE: &str = include_str!("fixtures/task-json-2026-12.json");

fn backup(n: u64) -> BackupId {
    BackupId(Ulid::from_parts(1_795_312_800_000 + n, u128::from(n)))
}

fn task_id(text: &str) -> TaskId {
    TaskId::from_str(text).unwrap_or_else(|error| panic!("{text}: {error}"))
}

/// What the fixture holds, built with today's types.
fn specs() -> Vec<TaskSpec> {
    let repository = RepositoryRef {
        config_id: Some("c0ffee".into()),
        ..RepositoryRef::new("repo", "s3://bucket/bk", 8 << 20)
    };
    let spec = |id: &str, kind: TaskKind| TaskSpec {
        task_id: task_id(id),
        source: "prod".into(),
        repository: repository.clone(),
        parent: Some(backup(1)),
        kind,
    };
    vec![
        spec(
            "01M91E000000000000000000AA/p1/t0",
            TaskKind::CopyPrefix {
                phase: CopyPhase::Nodes,
                node: "node1".into(),
                prefix: "node1/wal/".into(),
                exclude: vec![ExcludeRule {
                    prefix: "node1/table-snapshots/".into(),
                    reason: "regenerated at start-up".into(),
                    record: true,
                }],
            },
        ),
        spec(
            "01M91E000000000000000000AA/p2/t0",
            TaskKind::CopyCatalog { catalog_prefix: "cluster1/".into(), phase: CopyPhase::Catalog },
        ),
        spec(
            "01M91E000000000000000000AA/p4/t0",
            TaskKind::CommitBackup {
                backup_id: backup(2),
                created_at_ms: 1_795_312_800_000,
                parts: vec![PartRef {
                    task_id: task_id("01M91E000000000000000000AA/p1/t0"),
                    attempt: 2,
                }],
            },
        ),
        spec("01M91E000000000000000000AA/cleanup/t0", TaskKind::RemoveStaging),
        spec(
            "01M91E000000000000000000BB/p0/t0",
            TaskKind::QuestDbPrepare { pg_addr: "quest:8812".into(), adopt_checkpoint: false },
        ),
        spec(
            "01M91E000000000000000000CC/p0/t0",
            TaskKind::ForgetBackups {
                backups: vec![backup(1)],
                retention: Retention {
                    keep_last: 3,
                    keep_daily: 7,
                    keep_weekly: 0,
                    keep_monthly: 0,
                },
                dry_run: false,
            },
        ),
        spec(
            "01M91E000000000000000000DD/p0/t0",
            TaskKind::VerifyBackup { backup_id: backup(2), deep: true },
        ),
        spec(
            "01M91E000000000000000000EE/p5/t0",
            TaskKind::RestoreObjects {
                backup_id: backup(2),
                target_url: "file:///var/lib/influxdb3".into(),
                phase: CopyPhase::Nodes,
                node: Some("node1".into()),
            },
        ),
    ]
}

fn report() -> TaskReport {
    TaskReport {
        num_objects: 12,
        num_bytes: 3_456,
        exclusions: vec![ExclusionReport {
            prefix: "node1/table-snapshots/".into(),
            reason: "regenerated at start-up".into(),
            num_objects: 4,
        }],
        catalog_format: Some(CatalogFormat::V3),
        num_skipped: 1,
        transfer: TransferStats {
            num_reused: 5,
            bytes_read: 3_000,
            bytes_written: 2_000,
            bytes_stored: 1_900,
            repository_puts: 3,
            list_bytes_written: 120,
        },
        warnings: vec!["a warning".into()],
        events: vec!["node1/wal/00000000003.wal vanished mid-copy".into()],
        consistency: Some(ConsistencyPoint {
            node: "node1".into(),
            snapshot_sequence: 6,
            snapshot_wal_sequence: 30,
            last_wal_sequence: 33,
            required_catalog_sequence: 12,
            retention_deleted: Vec::new(),
        }),
        catalog_sequence: Some(12),
        forgotten: vec![backup(1)],
        corrupt: vec![CorruptObject {
            key: "node1/wal/x.wal".into(),
            reason: "CRC32 mismatch".into(),
        }],
        repository_config: Some("c0ffee".into()),
        checkpoint_held_ms: Some(215),
        snapshot: Some("btrfs snapshot bk-01M91E-q taken in 0.12 s".into()),
        ..TaskReport::default()
    }
}

#[test]
fn test_task_json_written_in_2026_12_still_reads_to_the_same_values() {
    let fixture: Value = serde_json::from_str(FIXTURE).unwrap_or_else(|error| panic!("{error}"));
    let read: Vec<TaskSpec> = serde_json::from_value(fixture["specs"].clone())
        .unwrap_or_else(|error| panic!("a 2026-12 task spec no longer reads: {error}"));
    assert_eq!(read, specs());
    let read: TaskReport = serde_json::from_value(fixture["report"].clone())
        .unwrap_or_else(|error| panic!("a 2026-12 task report no longer reads: {error}"));
    assert_eq!(read, report());
}
