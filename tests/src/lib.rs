//! bk's test kit.
//!
//! # Layout
//! - [`layout`]: writes a realistic InfluxDB 3 Enterprise (or Core) object-store tree: real file
//!   names and number padding, snapshot manifests naming their parquet files, catalog layouts
//!   v1/v2/v3, compactor prefixes, licence files. Used by the tests, the demo and the benchmark.
//! - [`live`]: live mode: a cluster that keeps writing WAL, snapshotting, deleting old WAL and
//!   parquet, and growing its catalog while a backup runs.
//! - [`influx_files`]: InfluxDB 3's file formats (WAL, catalog, parquet framing) as it writes them.
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
//! - [`tree`]: hashing and comparing directory trees.
//! - [`webdriver`]: a headless Chromium over WebDriver, for the web console's tests.
//! - [`sandbox`]: real `bk-coordinator` / `bk-worker` processes on port-0 listeners, and
//!   `bkctl` invocations against them.

pub mod chaos;
pub mod flaky_proxy;
pub mod garage;
pub mod influx_files;
pub mod invariants;
pub mod layout;
pub mod live;
pub mod loopfs;
pub mod pki;
pub mod questdb_layout;
pub mod questdb_peer;
pub mod questdb_recovery;
pub mod sandbox;
pub mod standin_db;
pub mod tree;
pub mod webdriver;
