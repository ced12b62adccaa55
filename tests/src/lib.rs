//! bk's test kit.
//!
//! # Layout
//! - [`layout`], [`influx_files`], [`tree`]: the sample clusters and tree hashing, re-exported
//!   from `bk-sample` (their own crate, so `bkctl demo` does not link the test kit).
//! - [`live`]: live mode: a cluster that keeps writing WAL, snapshotting, deleting old WAL and
//!   parquet, and growing its catalog while a backup runs.
//! - [`invariants`]: what InfluxDB 3 needs to restart from a tree without losing data.
//! - [`questdb_peer`]: a PostgreSQL wire peer that behaves like QuestDB's checkpoint commands.
//! - [`standin_db`]: a stand-in database that restore drills start instead of InfluxDB 3 / QuestDB.
//! - [`questdb_layout`]: a QuestDB-like server root.
//! - [`questdb_recovery`]: what a QuestDB server of a given version does with a restored root
//!   when it starts.
//! - [`chaos`]: seeded fault campaigns against real processes, and the invariants checked after.
//! - [`flaky_proxy`]: a TCP front for an S3 server that throttles (503 SlowDown) first.
//! - [`garage`]: a real S3-compatible server (Garage) on loopback.
//! - [`loopfs`]: btrfs, XFS and LVM thin filesystems on loop devices, for snapshot tests.
//! - [`pki`]: throw-away certificate authorities (via `openssl`) for TLS tests.
//! - [`webdriver`]: a headless Chromium over WebDriver, for the web console's tests.
//! - [`sandbox`]: real `bk-coordinator` / `bk-worker` processes on port-0 listeners, and
//!   `bkctl` invocations against them.

pub use bk_sample::{influx_files, layout, tree};

pub mod chaos;
pub mod flaky_proxy;
pub mod garage;
pub mod invariants;
pub mod live;
pub mod loopfs;
pub mod pki;
pub mod questdb_layout;
pub mod questdb_peer;
pub mod questdb_recovery;
pub mod sandbox;
pub mod standin_db;
pub mod webdriver;
