//! S3 credentials that follow their files: read again whenever a file changes, so a task that
//! runs for hours keeps working across a key rotation (the new key written into the file, the
//! old one revoked later) without a restart or a new task.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use object_store::aws::AwsCredential;
use object_store::CredentialProvider;

/// Where one part of the credential comes from.
#[derive(Debug, Clone)]
pub enum CredentialPart {
    /// A value given inline or by the environment (never logged).
    Value(String),
    /// A file whose trimmed content is the value, re-read when its modification time changes.
    File(PathBuf),
}

/// An AWS credential assembled from files (and values), cached until a file changes.
#[derive(Debug)]
pub struct FileAwsCredentials {
    key_id: CredentialPart,
    secret_key: CredentialPart,
    token: Option<CredentialPart>,
    cache: Mutex<Option<Cached>>,
}

#[derive(Debug)]
struct Cached {
    stamps: Vec<Option<SystemTime>>,
    credential: Arc<AwsCredential>,
}

impl FileAwsCredentials {
    /// A provider for `key_id` + `secret_key` (+ an optional session `token`).
    pub fn new(
        key_id: CredentialPart,
        secret_key: CredentialPart,
        token: Option<CredentialPart>,
    ) -> Self {
        Self { key_id, secret_key, token, cache: Mutex::new(None) }
    }

    fn parts(&self) -> impl Iterator<Item = &CredentialPart> {
        [&self.key_id, &self.secret_key].into_iter().chain(self.token.as_ref())
    }

    fn stamps(&self) -> Vec<Option<SystemTime>> {
        self.parts()
            .map(|part| match part {
                CredentialPart::Value(_) => None,
                CredentialPart::File(path) => {
                    std::fs::metadata(path).and_then(|metadata| metadata.modified()).ok()
                }
            })
            .collect()
    }

    fn load(&self) -> object_store::Result<AwsCredential> {
        Ok(AwsCredential {
            key_id: read_part(&self.key_id)?,
            secret_key: read_part(&self.secret_key)?,
            token: self.token.as_ref().map(read_part).transpose()?,
        })
    }
}

#[async_trait::async_trait]
impl CredentialProvider for FileAwsCredentials {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        let stamps = self.stamps();
        let mut cache = self.cache.lock().unwrap_or_else(|poison| poison.into_inner());
        if let Some(cached) = cache.as_ref().filter(|cached| cached.stamps == stamps) {
            return Ok(cached.credential.clone());
        }
        let credential = Arc::new(self.load()?);
        *cache = Some(Cached { stamps, credential: credential.clone() });
        Ok(credential)
    }
}

fn read_part(part: &CredentialPart) -> object_store::Result<String> {
    match part {
        CredentialPart::Value(value) => Ok(value.clone()),
        CredentialPart::File(path) => read_secret_file(path),
    }
}

/// Reads a secret file; errors name the file, never its content.
fn read_secret_file(path: &Path) -> object_store::Result<String> {
    std::fs::read_to_string(path).map(|text| text.trim().to_string()).map_err(|error| {
        object_store::Error::Generic {
            store: "S3",
            source: format!("cannot read credential file `{}`: {error}", path.display()).into(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn test_a_rotated_secret_file_is_used_by_the_next_request() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "old-secret\n").unwrap();
        let provider = FileAwsCredentials::new(
            CredentialPart::Value("key".to_string()),
            CredentialPart::File(secret.clone()),
            None,
        );
        assert_eq!(provider.get_credential().await.unwrap().secret_key, "old-secret");
        std::fs::write(&secret, "new-secret\n").unwrap();
        let file = std::fs::File::options().write(true).open(&secret).unwrap();
        file.set_modified(SystemTime::now() + Duration::from_secs(5)).unwrap();
        assert_eq!(provider.get_credential().await.unwrap().secret_key, "new-secret");
    }

    #[tokio::test]
    async fn test_a_missing_file_is_named_without_any_secret() {
        let provider = FileAwsCredentials::new(
            CredentialPart::Value("key-id-value".to_string()),
            CredentialPart::File("/nonexistent/bk-secret".into()),
            None,
        );
        let error = provider.get_credential().await.unwrap_err().to_string();
        assert!(error.contains("/nonexistent/bk-secret") && !error.contains("key-id-value"));
    }
}
