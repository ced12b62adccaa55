//! A repository as tasks hold it once [`super::open`] has opened it: its store, config and
//! unlocked key. Apart from opening so that the per-worker cache and the readers name it without
//! importing the opening procedure (which uses the cache).

use std::sync::Arc;

use object_store::ObjectStore;

use super::config::RepositoryConfig;
use super::crypto::MasterKey;

/// An open repository.
#[derive(Clone)]
pub struct Repository {
    /// Its name (as registered with the coordinator).
    pub name: String,
    /// Its URL.
    pub url: String,
    /// Its store.
    pub store: Arc<dyn ObjectStore>,
    /// The unlocked master key.
    pub key: Arc<MasterKey>,
    /// Its config.
    pub config: Arc<RepositoryConfig>,
    /// The key file the passphrase opened.
    pub key_id: String,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Repository")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("config_id", &self.config.config_id)
            .finish()
    }
}
