//! A listed file's entry as object_store's `LocalFileSystem` makes it, and the walk's errors.

use object_store::path::Path;
use object_store::{Error, ObjectMeta, Result};
use rustix::fs::Statx;

use super::memo::FileFacts;

/// object_store's staged upload files are `name#<digits>`; its listing leaves them out.
pub(super) fn is_upload_in_progress(name: &str) -> bool {
    match name.split_once('#') {
        Some((_, suffix)) => !suffix.is_empty() && suffix.as_bytes().iter().all(u8::is_ascii_digit),
        None => false,
    }
}

/// The entry object_store's `LocalFileSystem` makes of a file.
pub(super) fn object_meta(key: String, stat: &Statx) -> Result<ObjectMeta> {
    object_meta_of(key, &FileFacts::of(stat))
}

/// The entry object_store's `LocalFileSystem` makes of a file with these facts.
pub(super) fn object_meta_of(key: String, facts: &FileFacts) -> Result<ObjectMeta> {
    let location = Path::parse(&key)?;
    let (seconds, nanos) = facts.mtime;
    let modified = chrono::DateTime::from_timestamp(seconds, nanos)
        .ok_or_else(|| generic(format!("`{key}`: modification time {seconds} out of range")))?;
    // Microseconds since the epoch; 0 before it (as `LocalFileSystem` makes them).
    let micros = u128::try_from(seconds)
        .map(|seconds| seconds * 1_000_000 + u128::from(nanos / 1_000))
        .unwrap_or_default();
    let size = facts.size;
    Ok(ObjectMeta {
        location,
        last_modified: modified,
        size,
        e_tag: Some(format!("\"{:x}-{micros:x}-{size:x}\"", facts.ino)),
        version: None,
    })
}

pub(super) fn generic(message: String) -> Error {
    Error::Generic { store: "LocalFileSystem", source: message.into() }
}
