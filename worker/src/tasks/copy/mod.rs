//! Copying objects into the repository: the engine every copy task uses.
//!
//! Two shapes of task use it. A task over a **listing** (a prefix of the node's store: WAL,
//! snapshots, parquet, a QuestDB root) streams: the listing, the parent backup's list of the
//! scope and what earlier attempts copied are merged by key, and only new or changed objects
//! are read ([`stream`]). A task over a **set** it finds itself (the catalog, licence files, a
//! consistency check's repairs) copies the set and writes it sorted at the end ([`set`]).
//!
//! Idempotent per task: an object an earlier attempt of the task or the parent backup recorded
//! with the same size, ETag and last-modified time is reused without being read. Objects run
//! independently (a large one does not hold up the others), at most `max_objects_in_flight`
//! reading at once across the worker ([`object`]); an object whose bytes are all read releases
//! its slot and waits for the pack holding its new blobs; its list item is written once that
//! pack is stored ([`output`]: an item never names a blob that is not in the repository). Every
//! object read is checked against its database's format as it streams past
//! ([`crate::formats`]); a damaged one is still copied, and reported.
//!
//! # Layout
//! - [`object`]: copying one object.
//! - [`output`]: the run, index files, progress saves and done record of an attempt.
//! - [`stream`]: a task over a listing.
//! - [`set`]: a task over a set of objects.
//! - [`listing`]: sorted listings, skipping what other tasks copy.
//! - [`totals`]: what a copy counted and found, added to the task's report.

pub mod listing;
pub mod object;
pub mod output;
pub mod set;
pub mod stream;
pub mod totals;

pub use listing::{head_if_exists, list_prefix};
pub use set::SetCopier;
pub use stream::{copy_listing, ScopeTarget, StreamedCopy};
pub use totals::CopyTotals;
