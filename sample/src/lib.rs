//! bk's sample clusters, apart from the test kit: `bkctl demo` (the binary operators install)
//! generates one, and linking the whole test kit (process sandboxes, S3 servers, fault
//! proxies) into it for that was wrong. The tests and the benchmark use it through `bk-tests`.
//!
//! # Layout
//! - [`layout`]: writes a realistic InfluxDB 3 Enterprise (or Core) object-store tree: real file
//!   names and number padding, snapshot manifests naming their parquet files, catalog layouts
//!   v1/v2/v3, compactor prefixes, licence files.
//! - [`influx_files`]: InfluxDB 3's file formats (WAL, catalog, parquet framing) as it writes them.
//! - [`tree`]: hashing and comparing directory trees.

pub mod influx_files;
pub mod layout;
pub mod tree;
