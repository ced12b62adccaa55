//! What bk knows of the databases' own file formats, to vouch for what it backs up.
//!
//! A backup that copies a damaged file faithfully is a backup the user learns is useless on the
//! day of the restore, when the source is gone. So the copy checks, in the same read (no second
//! pass), the integrity the databases themselves write into their files
//! (`shared/reference/influxdb3-layout.md`):
//!
//! | kind | key | checked |
//! |---|---|---|
//! | InfluxDB 3 WAL | `<node>/wal/<seq:011>.wal` | `idb3.001` magic, CRC32 (big-endian) of the payload |
//! | catalog v3 | `…/catalog/v3/snapshot`, `…/catalog/v3/logs/<seq:020>.catalog` | 64-byte header: `IDB3`, format 1, header CRC, payload length and CRC; a log's sequence matches its name; the catalog UUID (one per catalog: checked by the catalog task) |
//! | catalog v1/v2 | `catalogs/*.catalog`, `_catalog_checkpoint`, `catalog/v2/…` | `idb3.NNN.l`/`.s` version id, CRC32 (big-endian) of the payload |
//! | snapshot manifest | `<node>/snapshots/<u64::MAX - seq:020>.info.json` | parses; its sequence matches its name |
//! | parquet | `*.parquet` | `PAR1` magic at both ends |
//!
//! Anything else is copied unvalidated.
//!
//! # Layout
//! - [`influxdb3`]: the per-kind checks, fed piece by piece.

pub mod influxdb3;

pub use influxdb3::{FileKind, Validated, Validator};

/// A damaged object found while copying: its key and what is wrong.
pub fn describe_corruption(key: &str, kind: FileKind, reason: &str) -> String {
    format!("{} `{key}`: {reason}", kind.describe())
}
