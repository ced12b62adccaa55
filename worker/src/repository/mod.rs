//! The repository format (restic-like, content-addressed).
//!
//! ```text
//! <repo>/bk-repository.json                   format version, id, chunk size, hash (create-only)
//! <repo>/chunks/<2 hex>/<blake3 hex>          object bytes; an object > chunk size is several chunks
//! <repo>/backups/<backup-id>/segments/<n>.jsonl   the object list, in segments of bounded size
//! <repo>/backups/<backup-id>/manifest         committed last, create-only: its presence = the backup
//! <repo>/staging/<job-id>/p<phase>/t<task>/a<attempt>/…   task results, removed after the job
//! ```
//! A chunk's name is the BLAKE3 of its bytes, so rewriting one writes the same bytes: correctness
//! does not rest on the store honouring create-only writes (Garage ignores `If-None-Match`).
//! A backup's manifest names its segments with their hashes and counts, so a reader detects a
//! truncated or altered segment.
//!
//! # Layout
//! - [`layout`]: where things live (keys).
//! - [`info`]: the `bk-repository.json` description.
//! - [`manifest`]: manifest, segment and staging record types.
//! - [`chunks`]: splitting an object into chunks and writing them.
//! - [`reader`]: reading a committed backup (manifest, segments) and key safety.
//! - [`staging`]: a copy task's result parts and its done record.

pub mod chunks;
pub mod info;
pub mod layout;
pub mod manifest;
pub mod reader;
pub mod staging;
