//! Talking to QuestDB over its PostgreSQL wire endpoint (`shared/reference/questdb-checkpoint.md`).
//!
//! QuestDB sends SQLSTATE `00000` with every error, so errors are classified by message text.
//! The checkpoint state is global to the server and has no owner: any connection can release
//! anyone's checkpoint. [`checkpoint`] therefore records in the repository's staging area
//! whether this job holds the checkpoint, and releases only its own.
//!
//! # Layout
//! - [`client`]: connecting, version detection, statements, error classification.
//! - [`checkpoint`]: the prepare and release tasks, and the ownership marker.
//! - [`disk`]: free space on the server root's filesystem.
//! - [`recovery`]: making a restored root recover from its checkpoint on the next start.

pub mod checkpoint;
pub mod client;
pub mod disk;
pub mod recovery;
