//! Opens object stores from URLs: the node's store and the repositories.
//!
//! `file://` opens a [`LocalFileSystem`] rooted at the path, listed at one `stat` per file and
//! whose large files start their writeback as soon as written ([`LocalStore`]); cloud URLs go through object_store's
//! builders with the standard environment variables plus the configured options and the
//! worker's retry settings, and are rooted at the URL's path with a [`PrefixStore`]. Secret
//! values are read from `*_file` options at open time, so a rotated secret file is picked up by
//! the next task; an S3 `aws_secret_access_key_file` is followed by every request (see
//! [`crate::credentials`]), so even a task that runs for hours survives a rotation.

use std::collections::BTreeMap;
use std::sync::Arc;

use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, Checksum};
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, ObjectStore, ObjectStoreScheme, RetryConfig};

use crate::credentials::{CredentialPart, FileAwsCredentials};
use crate::local_store::LocalStore;
use url::Url;

/// Why a store cannot be opened. Never carries option values (they may be secrets).
#[derive(Debug, thiserror::Error)]
pub enum StoreOpenError {
    /// The URL does not parse or has an unsupported scheme.
    #[error("invalid object-store URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL (URLs never carry credentials in bk).
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// A `*_file` option names a file that cannot be read.
    #[error("cannot read the file of option `{option}`: {reason}")]
    SecretFile {
        /// The option's name.
        option: String,
        /// Why.
        reason: String,
    },
    /// The builder refused the configuration.
    #[error("cannot open object store `{url}`: {reason}")]
    Builder {
        /// The URL.
        url: String,
        /// The builder's error.
        reason: String,
    },
}

/// How requests to a cloud store are retried: object_store retries 5xx (503 SlowDown included),
/// 429, connection errors and timeouts of safe requests with exponential backoff and jitter;
/// these settings bound it. Every retry is counted (see `crate::retries`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySettings {
    /// Retries of one request at most; 0 disables retrying (env `BK_RETRY_MAX_RETRIES`).
    pub max_retries: usize,
    /// No retry starts this long after the request was first sent (env `BK_RETRY_TIMEOUT`).
    #[serde(with = "humantime_serde")]
    pub retry_timeout: Duration,
    /// The first backoff; each next one doubles it, with jitter.
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// The longest backoff.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            max_retries: 10,
            retry_timeout: Duration::from_secs(180),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(15),
        }
    }
}

impl RetrySettings {
    fn to_object_store(&self) -> RetryConfig {
        RetryConfig {
            backoff: BackoffConfig {
                init_backoff: self.initial_backoff,
                max_backoff: self.max_backoff,
                base: 2.0,
            },
            max_retries: self.max_retries,
            retry_timeout: self.retry_timeout,
        }
    }
}

/// Opens the node store at `url` a task reads from: [`open_store`]'s, and for a local directory
/// with its listings' memos kept under `listing_memos` (the worker's cache; see
/// [`crate::local_list`]), so an incremental does not read unchanged directories again (nor
/// `stat` their files, when the database writes `whole_file_writes` only).
///
/// # Errors
/// [`StoreOpenError`] naming the URL or option at fault.
pub fn open_source_store(
    url: &str,
    options: &BTreeMap<String, String>,
    env: &[(String, String)],
    retry: &RetrySettings,
    listing_memos: Option<&std::path::Path>,
    whole_file_writes: bool,
) -> Result<Arc<dyn ObjectStore>, StoreOpenError> {
    let parsed = Url::parse(url).ok().filter(|parsed| parsed.scheme() == "file");
    match (parsed, listing_memos) {
        (Some(parsed), Some(memos)) => {
            let store = local_store(url, &parsed, env, false)?;
            Ok(Arc::new(store.with_listing_memos(memos.to_path_buf(), whole_file_writes)))
        }
        _ => open_store(url, options, env, retry, false),
    }
}

/// The local directory store at `parsed` (`url` as given, for errors).
fn local_store(
    url: &str,
    parsed: &Url,
    env: &[(String, String)],
    create_dir: bool,
) -> Result<LocalStore, StoreOpenError> {
    let path = parsed.to_file_path().map_err(|()| StoreOpenError::InvalidUrl {
        url: url.to_string(),
        reason: "not an absolute local path (use file:///absolute/path)".to_string(),
    })?;
    if create_dir {
        std::fs::create_dir_all(&path).map_err(|error| StoreOpenError::Builder {
            url: url.to_string(),
            reason: format!("cannot create `{}`: {error}", path.display()),
        })?;
    } else if !path.is_dir() {
        return Err(StoreOpenError::Builder {
            url: url.to_string(),
            reason: format!("`{}` is not a directory", path.display()),
        });
    }
    let store = LocalFileSystem::new_with_prefix(&path).map_err(|error| {
        StoreOpenError::Builder { url: url.to_string(), reason: error.to_string() }
    })?;
    let store = store.with_automatic_cleanup(true);
    // Bench-only: what early writeback and page recycling buy, measured alike.
    let recycle_pages =
        !env.iter().any(|(key, value)| key == "BK_BENCH_NO_PAGE_RECYCLING" && value == "1");
    Ok(LocalStore::new(store, &path, recycle_pages))
}

/// Opens the store at `url`.
///
/// `create_dir`: for `file://` URLs, create the directory if missing (repositories) rather than
/// failing (sources: a missing data dir is a configuration mistake).
///
/// # Errors
/// [`StoreOpenError`] naming the URL or option at fault.
pub fn open_store(
    url: &str,
    options: &BTreeMap<String, String>,
    env: &[(String, String)],
    retry: &RetrySettings,
    create_dir: bool,
) -> Result<Arc<dyn ObjectStore>, StoreOpenError> {
    let parsed = Url::parse(url).map_err(|error| StoreOpenError::InvalidUrl {
        url: url.to_string(),
        reason: error.to_string(),
    })?;
    match parsed.scheme() {
        "file" => Ok(Arc::new(local_store(url, &parsed, env, create_dir)?)),
        "memory" => Ok(Arc::new(InMemory::new())),
        "s3" | "s3a" | "az" | "azure" | "abfs" | "abfss" | "gs" => {
            let resolved = resolve_options(options, env)?;
            let builder_error = |error: object_store::Error| StoreOpenError::Builder {
                url: url.to_string(),
                reason: error.to_string(),
            };
            let invalid =
                |reason: String| StoreOpenError::InvalidUrl { url: url.to_string(), reason };
            let (scheme, prefix) =
                ObjectStoreScheme::parse(&parsed).map_err(|error| invalid(error.to_string()))?;
            let retry = retry.to_object_store();
            let store: Arc<dyn ObjectStore> = match scheme {
                ObjectStoreScheme::AmazonS3 => {
                    let mut builder = s3_builder(url, &resolved).with_retry(retry);
                    if let Some(provider) = file_credentials(options, &resolved)? {
                        builder = builder.with_credentials(Arc::new(provider));
                    }
                    Arc::new(builder.build().map_err(builder_error)?)
                }
                ObjectStoreScheme::MicrosoftAzure => Arc::new(
                    configured(MicrosoftAzureBuilder::new().with_url(url), &resolved, |b, k, v| {
                        b.with_config(k, v)
                    })
                    .with_retry(retry)
                    .build()
                    .map_err(builder_error)?,
                ),
                ObjectStoreScheme::GoogleCloudStorage => Arc::new(
                    configured(
                        GoogleCloudStorageBuilder::new().with_url(url),
                        &resolved,
                        |b, k, v| b.with_config(k, v),
                    )
                    .with_retry(retry)
                    .build()
                    .map_err(builder_error)?,
                ),
                other => {
                    return Err(StoreOpenError::InvalidUrl {
                        url: url.to_string(),
                        reason: format!("{other:?} is not a cloud store"),
                    })
                }
            };
            if prefix.as_ref().is_empty() {
                Ok(store)
            } else {
                Ok(Arc::new(PrefixStore::new(store, prefix)))
            }
        }
        other => Err(StoreOpenError::InvalidUrl {
            url: url.to_string(),
            reason: format!("scheme `{other}` is not supported: use file, s3, az, gs"),
        }),
    }
}

/// The S3 builder for `url` with `options` applied, whose uploads are checked by a CRC64-NVME
/// checksum instead of a SigV4 payload hash unless `options` choose either themselves.
///
/// SigV4's signed payload makes both sides SHA-256 every body (on 2 cores, ~5 % of bk's CPU
/// and as much of the server's, for a backup into Garage). A CRC64-NVME checksum in the signed
/// `x-amz-checksum-crc64nvme` header costs almost nothing (`crc-fast`, hardware CRC), and the
/// server still refuses a body damaged in transit (S3 `BadDigest`, Garage `InvalidDigest`), so
/// a damaged pack is never stored. What a CRC cannot stop, a deliberate forgery on a plain-HTTP
/// path, bk's own authentication of every blob finds at restore or verify. Setting
/// `aws_unsigned_payload` or `aws_checksum_algorithm` (for a server that refuses the checksum
/// header: `aws_unsigned_payload = "false"`, SigV4 signed payloads) turns these defaults off.
fn s3_builder(url: &str, options: &[(String, String)]) -> AmazonS3Builder {
    let mut builder = AmazonS3Builder::new().with_url(url);
    let chosen = options.iter().any(|(key, _)| {
        matches!(key.parse(), Ok(AmazonS3ConfigKey::UnsignedPayload | AmazonS3ConfigKey::Checksum))
    });
    if !chosen {
        builder = builder.with_unsigned_payload(true).with_checksum_algorithm(Checksum::CRC64NVME);
    }
    configured(builder, options, |b, k, v| b.with_config(k, v))
}

/// Makes everything written under a `file://` store durable: `syncfs` on its filesystem, which
/// writes back and commits the data and the directory entries (renames included) of every file
/// bk put there. Called before a task that wrote to a local repository or restore target
/// reports success, so a power loss after `committed` (or a finished restore) loses nothing.
/// Cloud stores are durable once a PUT returns: nothing to do.
///
/// # Errors
/// When the directory cannot be opened or the sync fails, naming the directory.
pub fn sync_local_store(url: &str) -> Result<(), StoreOpenError> {
    let Some(path) = Url::parse(url)
        .ok()
        .filter(|url| url.scheme() == "file")
        .and_then(|url| url.to_file_path().ok())
    else {
        return Ok(());
    };
    if !path.is_dir() {
        return Ok(()); // Nothing was written there.
    }
    let failed = |error: std::io::Error| StoreOpenError::Builder {
        url: url.to_string(),
        reason: format!("cannot sync `{}` to disk: {error}", path.display()),
    };
    let directory = std::fs::File::open(&path).map_err(failed)?;
    rustix::fs::syncfs(&directory).map_err(|error| failed(error.into()))
}

/// For `aws_secret_access_key_file`: credentials that follow the file (see
/// [`crate::credentials`]) instead of the value read once at open time.
fn file_credentials(
    options: &BTreeMap<String, String>,
    resolved: &[(String, String)],
) -> Result<Option<FileAwsCredentials>, StoreOpenError> {
    let Some(secret_file) = options.get("aws_secret_access_key_file") else { return Ok(None) };
    let resolved_value =
        |key: &str| resolved.iter().find(|(name, _)| name == key).map(|(_, value)| value.clone());
    let part = |key: &str| match options.get(&format!("{key}_file")) {
        Some(file) => Some(CredentialPart::File(file.into())),
        None => resolved_value(key).map(CredentialPart::Value),
    };
    let key_id = part("aws_access_key_id").ok_or_else(|| StoreOpenError::SecretFile {
        option: "aws_secret_access_key_file".to_string(),
        reason: "it needs `aws_access_key_id` (or `aws_access_key_id_file`, or AWS_ACCESS_KEY_ID)"
            .to_string(),
    })?;
    let secret = CredentialPart::File(secret_file.into());
    Ok(Some(FileAwsCredentials::new(key_id, secret, part("aws_session_token"))))
}

/// Applies every option the builder knows (`K` parses from its name); others are skipped, as
/// object_store's own `parse_url_opts` does (environment variables bring many of those).
fn configured<B, K: std::str::FromStr>(
    builder: B,
    options: &[(String, String)],
    apply: impl Fn(B, K, String) -> B,
) -> B {
    options.iter().fold(builder, |builder, (key, value)| match key.parse::<K>() {
        Ok(key) => apply(builder, key, value.clone()),
        Err(_) => builder,
    })
}

/// Environment variables first (lower-cased, as object_store's `from_env` does), configured
/// options over them, `*_file` options replaced by the file's trimmed content.
fn resolve_options(
    options: &BTreeMap<String, String>,
    env: &[(String, String)],
) -> Result<Vec<(String, String)>, StoreOpenError> {
    let mut resolved: BTreeMap<String, String> = env
        .iter()
        .filter(|(name, _)| {
            name.starts_with("AWS_") || name.starts_with("AZURE_") || name.starts_with("GOOGLE_")
        })
        .map(|(name, value)| (name.to_ascii_lowercase(), value.clone()))
        .collect();
    for (key, value) in options {
        match key.strip_suffix("_file") {
            Some(option) => {
                let secret = std::fs::read_to_string(value).map_err(|error| {
                    StoreOpenError::SecretFile { option: key.clone(), reason: error.to_string() }
                })?;
                resolved.insert(option.to_string(), secret.trim().to_string());
            }
            None => {
                resolved.insert(key.clone(), value.clone());
            }
        }
    }
    // object_store rejects unknown keys: keep only ones its builders know by prefix.
    Ok(resolved
        .into_iter()
        .filter(|(key, _)| {
            key.starts_with("aws_") || key.starts_with("azure_") || key.starts_with("google_")
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_secret_file_option_is_read_and_missing_file_names_the_option_not_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let secret_path = dir.path().join("secret");
        std::fs::write(&secret_path, "s3cr3t\n").unwrap();
        let options: BTreeMap<String, String> =
            [("aws_secret_access_key_file".to_string(), secret_path.display().to_string())].into();
        let resolved = resolve_options(&options, &[]).unwrap();
        assert_eq!(resolved, vec![("aws_secret_access_key".to_string(), "s3cr3t".to_string())]);
        let missing: BTreeMap<String, String> =
            [("aws_secret_access_key_file".to_string(), "/nonexistent/s3cr3t".to_string())].into();
        let error = resolve_options(&missing, &[]).unwrap_err().to_string();
        assert!(error.contains("aws_secret_access_key_file"), "{error}");
    }

    #[test]
    fn test_local_stores_are_synced_and_others_need_nothing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("chunk"), b"bytes").unwrap();
        let url = format!("file://{}", dir.path().display());
        sync_local_store(&url).expect("a local directory syncs");
        sync_local_store("file:///nonexistent/bk-never-written").expect("nothing written: no-op");
        sync_local_store("s3://bucket/prefix").expect("cloud stores are durable on PUT");
    }

    #[test]
    fn test_missing_source_dir_and_bad_scheme_are_clear_errors() {
        let error = open_store(
            "file:///nonexistent/bk-test",
            &BTreeMap::new(),
            &[],
            &RetrySettings::default(),
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("is not a directory"), "{error}");
        let error =
            open_store("ftp://x/y", &BTreeMap::new(), &[], &RetrySettings::default(), false)
                .unwrap_err()
                .to_string();
        assert!(error.contains("scheme `ftp` is not supported"), "{error}");
    }

    #[test]
    fn test_s3_uploads_carry_a_crc_unless_the_options_choose_how_bodies_are_checked() {
        use object_store::aws::AmazonS3ConfigKey::{Checksum as ChecksumKey, UnsignedPayload};
        let value = |builder: &AmazonS3Builder, key| builder.get_config_value(&key);
        let default = s3_builder("s3://bucket/prefix", &[]);
        assert_eq!(value(&default, UnsignedPayload).as_deref(), Some("true"));
        assert_eq!(value(&default, ChecksumKey).as_deref(), Some("crc64nvme"));
        let signed = s3_builder("s3://b/p", &[("aws_unsigned_payload".into(), "false".into())]);
        assert_eq!(value(&signed, UnsignedPayload).as_deref(), Some("false"));
        assert_eq!(value(&signed, ChecksumKey), None, "signed payloads need no checksum header");
        let sha = s3_builder("s3://b/p", &[("checksum_algorithm".into(), "sha256".into())]);
        assert_eq!(value(&sha, ChecksumKey).as_deref(), Some("sha256"));
        assert_eq!(value(&sha, UnsignedPayload).as_deref(), Some("false"));
    }
}
