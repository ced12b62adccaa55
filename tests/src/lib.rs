//! bk's test kit.
//!
//! # Layout
//! - [`layout`]: writes a realistic InfluxDB 3 Enterprise (or Core) object-store tree: real file
//!   names and number padding, snapshot manifests naming their parquet files, catalog layouts
//!   v1/v2/v3, compactor prefixes, licence files. Used by the tests, the demo and the benchmark.
//! - [`tree`]: hashing and comparing directory trees.
//! - [`sandbox`]: real `bk-coordinator` / `bk-worker` processes on port-0 listeners, and
//!   `bkctl` invocations against them.

pub mod layout;
pub mod sandbox;
pub mod tree;
