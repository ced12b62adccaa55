//! What a registered repository must satisfy. Pure: the Control service converts the request
//! and calls this; the rules and their messages live here, with their tests.

use super::domain::Repository;
use super::plan::DEFAULT_CHUNK_SIZE;

/// URL schemes a repository may use (object_store's, plus `memory://` for tests).
const SUPPORTED_SCHEMES: [&str; 7] =
    ["file://", "s3://", "az://", "azure://", "abfs://", "gs://", "memory://"];

/// A repository as asked for, before defaults and checks. Zero sizes and a missing level mean
/// "the default".
#[derive(Clone, Debug, Default)]
pub struct RepositoryRequest {
    /// The operator's name for it.
    pub name: String,
    /// Its object-store URL.
    pub url: String,
    /// Chunk size in bytes (0: default).
    pub chunk_size: u64,
    /// Pack size in bytes (0: default).
    pub pack_size: u64,
    /// zstd level (`None`: default; 0: off).
    pub compression_level: Option<i32>,
}

/// Checks `request` and fills in defaults.
///
/// # Errors
/// A message naming what is wrong and the accepted values, for an empty name, an unsupported
/// URL or one carrying credentials, and sizes or levels out of range.
pub fn repository(request: RepositoryRequest) -> Result<Repository, String> {
    let RepositoryRequest { name, url, chunk_size, pack_size, compression_level } = request;
    if name.trim().is_empty() {
        return Err("repository name is empty".to_string());
    }
    if !SUPPORTED_SCHEMES.iter().any(|scheme| url.starts_with(scheme)) {
        return Err(format!(
            "repository URL `{url}` is not supported: use file:///path, s3://bucket/prefix, az://container/prefix or gs://bucket/prefix"
        ));
    }
    if url.contains('@') {
        return Err("repository URLs must not carry credentials: give them to the workers instead"
            .to_string());
    }
    let chunk_size = if chunk_size == 0 { DEFAULT_CHUNK_SIZE } else { chunk_size };
    if !(64 * 1024..=256 << 20).contains(&chunk_size) {
        return Err(format!("chunk size {chunk_size} is out of range: use 64 KiB to 256 MiB"));
    }
    let pack_size = if pack_size == 0 { bk_proto::model::default_pack_size() } else { pack_size };
    if !(1 << 20..=1 << 30).contains(&pack_size) {
        return Err(format!("pack size {pack_size} is out of range: use 1 MiB to 1 GiB"));
    }
    let compression_level =
        compression_level.unwrap_or_else(bk_proto::model::default_compression_level);
    if !(0..=19).contains(&compression_level) {
        return Err(format!(
            "compression level {compression_level} is out of range: 0 (off) to 19 (zstd)"
        ));
    }
    Ok(Repository { pack_size, compression_level, ..Repository::new(name, url, chunk_size) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(url: &str) -> RepositoryRequest {
        RepositoryRequest { name: "r".to_string(), url: url.to_string(), ..Default::default() }
    }

    #[test]
    fn test_repository_requests_are_checked_and_defaulted() {
        let cases: Vec<(&str, RepositoryRequest, Result<(), &str>)> = vec![
            ("file URL, defaults", request("file:///backups"), Ok(())),
            ("S3 URL", request("s3://bucket/prefix"), Ok(())),
            (
                "empty name",
                RepositoryRequest { name: " ".into(), ..request("s3://b") },
                Err("name is empty"),
            ),
            ("unknown scheme", request("ftp://host/x"), Err("is not supported: use file:///path")),
            (
                "credentials in the URL",
                request("s3://key:secret@bucket"),
                Err("give them to the workers"),
            ),
            (
                "chunk too small",
                RepositoryRequest { chunk_size: 1024, ..request("s3://b") },
                Err("chunk size 1024 is out of range"),
            ),
            (
                "pack too large",
                RepositoryRequest { pack_size: 2 << 30, ..request("s3://b") },
                Err("pack size 2147483648 is out of range"),
            ),
            (
                "level too high",
                RepositoryRequest { compression_level: Some(22), ..request("s3://b") },
                Err("compression level 22 is out of range"),
            ),
            (
                "compression off",
                RepositoryRequest { compression_level: Some(0), ..request("s3://b") },
                Ok(()),
            ),
        ];
        for (case, request, want) in cases {
            match (repository(request), want) {
                (Ok(_), Ok(())) => {}
                (Err(error), Err(needle)) => {
                    assert!(error.contains(needle) && !error.contains("secret"), "{case}: {error}")
                }
                (got, want) => panic!("{case}: got {got:?}, want {want:?}"),
            }
        }
        let defaulted = repository(request("file:///backups")).unwrap();
        assert_eq!(
            (defaulted.chunk_size, defaulted.pack_size, defaulted.compression_level),
            (
                DEFAULT_CHUNK_SIZE,
                bk_proto::model::default_pack_size(),
                bk_proto::model::default_compression_level()
            )
        );
    }
}
