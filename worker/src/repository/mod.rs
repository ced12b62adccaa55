//! The repository, format 3: packed, compressed, encrypted, authenticated.
//!
//! ```text
//! <repo>/config/<config-id>          identity and parameters (chunk and pack size, compression)
//! <repo>/keys/<key-id>               the master key, wrapped by a passphrase-derived key (Argon2id)
//! <repo>/packs/<2 hex>/<pack-id>     sealed blobs back to back, then a sealed header listing them
//! <repo>/index/<partition>/<name>    blob id → pack, offset, length, per node (see [`index`])
//! <repo>/lists/<2 hex>/<64 hex>      object list chunks: sorted runs of entries (see [`list`])
//! <repo>/backups/<id>/manifest       written last, create-only: the backup exists once it does
//! <repo>/staging/<job>/p<phase>/t<task>/a<attempt>/   progress and done records of task attempts
//! ```
//! Everything but key files is sealed with the master key (AES-256-GCM), each file bound to its
//! own key and each blob to its id, so a flipped byte, a truncated file or a file moved or
//! swapped is an error naming the object, never wrong data. Blob ids are keyed BLAKE3 hashes of
//! the plaintext: equal content is stored once, and ids reveal nothing. The coordinator sees
//! names, sizes and counts, never a byte of data or a key (see the README).
//!
//! Correctness never rests on create-only writes (Garage ignores `If-None-Match`): packs,
//! index files, key files and configs have unique names, and the coordinator fences the one
//! commit of a manifest.
//!
//! # Layout
//! - [`crypto`]: the master key, sealing, blob ids.
//! - [`keys`]: key files (passphrases), and [`open`]: unlocking, initialising.
//! - [`cache`]: what a worker keeps per repository between tasks (keys, configs, local index).
//! - [`config`]: the repository's parameters. [`layout`]: where things live.
//! - [`metadata`]: sealed files. [`manifest`]: manifest and staging record types.
//! - [`list`]: object lists, as sorted runs of binary chunks.
//! - [`blob`], [`pack`], [`packer`]: blobs, packs, and the worker-wide packer; [`buffers`]: the
//!   megabyte buffers they reuse.
//! - [`source`], [`writer`]: reading a source object in chunks into blobs, in one pass.
//! - [`index`]: where each blob is; [`index_cache`]: a worker's local copy of it, on disk.
//! - [`reader`]: reading backups and blobs back.
//! - [`staging`]: a task attempt's results.

pub mod blob;
pub mod buffers;
pub mod cache;
pub mod config;
pub mod counting;
pub mod crypto;
#[cfg(test)]
pub mod hooked_store;
pub mod import_thread;
pub mod index;
pub mod index_cache;
pub mod keys;
pub mod layout;
pub mod list;
pub mod manifest;
pub mod metadata;
pub mod open;
pub mod opened;
pub mod pack;
pub mod packer;
pub mod reader;
pub mod source;
pub mod staging;
#[cfg(test)]
pub mod test_support;
pub mod writer;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::ObjectStore;

use crate::error::{RepositoryError, RepositoryResult};

/// Every key under directory `dir` of the repository.
///
/// # Errors
/// [`RepositoryError::Store`] when listing fails.
pub async fn list_paths(store: &dyn ObjectStore, dir: &str) -> RepositoryResult<Vec<Path>> {
    let prefix = Path::from(dir);
    store
        .list(Some(&prefix))
        .map_ok(|meta| meta.location)
        .try_collect()
        .await
        .map_err(RepositoryError::store(format!("{dir}/")))
}
