//! What InfluxDB 3 writes where (see `shared/reference/influxdb3-layout.md`), stated once for
//! the coordinator's planners and the worker's tasks: a prefix the two sides spelled apart
//! would be backed up by one and not restored by the other.

/// The compactor's prefixes, in the vendor's backup order.
pub const COMPACTOR_PREFIXES: [&str; 3] = ["cs/", "cd/", "c/"];

/// The per-node prefixes copied as their own parallel tasks (every other prefix under a node is
/// copied too, by a catch-all task).
pub const NODE_DATA_PREFIXES: [&str; 3] = ["wal/", "snapshots/", "dbs/"];

/// Per-table snapshot deltas under a node, regenerated from `snapshots/` at start-up: never
/// backed up.
pub const TABLE_SNAPSHOTS_PREFIX: &str = "table-snapshots/";

/// Why [`TABLE_SNAPSHOTS_PREFIX`] is left out, as a backup records it.
pub const TABLE_SNAPSHOTS_REASON: &str =
    "transient per-table snapshot deltas, regenerated from snapshots/ at start-up";

/// The catalog's keys under the cluster id (node id on Core), every layout: v3's `catalog/`,
/// v1/v2's `catalogs/` and `_catalog_checkpoint`, and Enterprise's `enterprise` object.
pub const CATALOG_KEYS: [&str; 4] = ["catalog/", "catalogs/", "_catalog_checkpoint", "enterprise"];

/// The v1 catalog checkpoint object under the catalog prefix.
pub const V1_CATALOG_CHECKPOINT: &str = "_catalog_checkpoint";

/// The v1/v2 catalog logs' prefix under the catalog prefix.
pub const V1_CATALOG_LOGS: &str = "catalogs/";

/// The licence objects of an Enterprise cluster, under the cluster id (absent ones are fine).
pub const LICENCE_FILES: [&str; 2] = ["commercial_license", "trial_or_home_license"];
