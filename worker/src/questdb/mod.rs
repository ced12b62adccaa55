//! QuestDB itself: talking to it over its PostgreSQL wire endpoint, and what its files need
//! (`shared/reference/questdb-checkpoint.md`). The prepare and release tasks that use these
//! are [`crate::tasks::questdb`].
//!
//! QuestDB sends SQLSTATE `00000` with every error, so errors are classified by message text.
//!
//! # Layout
//! - [`client`]: connecting, version detection, statements, error classification.
//! - [`disk`]: free space on the server root's filesystem.
//! - [`recovery`]: making a restored root recover from its checkpoint on the next start.

pub mod client;
pub mod disk;
pub mod recovery;
