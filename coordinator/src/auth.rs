//! Bearer-token authentication for the Control API (clients) and the WorkerHub API (workers).
//!
//! Tokens come from a file (one per line, `#` comments) and/or a comma-separated environment
//! variable. The file is re-read when it changes, so tokens rotate without a restart: add the new
//! token, move clients over, remove the old one. With no token configured for an API, that API
//! is open (and the coordinator says so at start-up). Tokens are never logged or echoed.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tonic::{Request, Status};

/// How often the token file's modification time is checked.
const RELOAD_CHECK_INTERVAL: Duration = Duration::from_millis(200);

/// A set of accepted tokens.
#[derive(Clone, Debug)]
pub struct TokenSet {
    inner: Arc<Mutex<TokenSetInner>>,
    /// Which API, for error messages: `client` or `worker`.
    audience: &'static str,
}

impl TokenSet {
    /// As [`TokenSet::new`], checking the file for changes at most every `interval` (tests use 0).
    pub fn with_reload_interval(self, interval: Duration) -> Self {
        self.inner.lock().unwrap_or_else(|poison| poison.into_inner()).reload_check_interval =
            interval;
        self
    }
}

#[derive(Debug)]
struct TokenSetInner {
    file: Option<PathBuf>,
    from_env: Vec<String>,
    from_file: Vec<String>,
    file_modified: Option<SystemTime>,
    checked_at: Option<Instant>,
    reload_check_interval: Duration,
}

impl TokenSet {
    /// Tokens from `file` (if any) and `from_env`.
    pub fn new(audience: &'static str, file: Option<PathBuf>, from_env: Vec<String>) -> Self {
        let from_env = from_env
            .into_iter()
            .map(|token| token.trim().to_string())
            .filter(|token| !token.is_empty())
            .collect();
        let inner = TokenSetInner {
            file,
            from_env,
            from_file: Vec::new(),
            file_modified: None,
            checked_at: None,
            reload_check_interval: RELOAD_CHECK_INTERVAL,
        };
        Self { inner: Arc::new(Mutex::new(inner)), audience }
    }

    /// Whether any token is configured (otherwise the API is open).
    pub fn is_enabled(&self) -> bool {
        let inner = self.inner.lock().unwrap_or_else(|poison| poison.into_inner());
        inner.file.is_some() || !inner.from_env.is_empty()
    }

    /// Checks the request's `authorization: Bearer <token>` header.
    ///
    /// # Errors
    /// UNAUTHENTICATED naming what is missing and how to provide it (never the token).
    pub fn check<T>(&self, request: Request<T>) -> Result<Request<T>, Status> {
        if !self.is_enabled() {
            return Ok(request);
        }
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim);
        let hint = match self.audience {
            "client" => "pass --token or set BK_TOKEN",
            _ => "set join_token_file (or BK_JOIN_TOKEN) in the worker's config",
        };
        let Some(presented) = presented else {
            return Err(Status::unauthenticated(format!(
                "missing bearer token for the {} API: {hint}",
                self.audience
            )));
        };
        if self.accepts(presented) {
            Ok(request)
        } else {
            Err(Status::unauthenticated(format!(
                "invalid bearer token for the {} API: {hint}",
                self.audience
            )))
        }
    }

    /// Whether `presented` is one of the tokens (re-reading the file when it changed).
    pub fn accepts(&self, presented: &str) -> bool {
        let mut inner = self.inner.lock().unwrap_or_else(|poison| poison.into_inner());
        inner.reload_if_changed();
        inner
            .from_env
            .iter()
            .chain(&inner.from_file)
            .any(|token| constant_time_eq(token.as_bytes(), presented.as_bytes()))
    }
}

impl TokenSetInner {
    fn reload_if_changed(&mut self) {
        if self.checked_at.is_some_and(|checked| checked.elapsed() < self.reload_check_interval) {
            return;
        }
        self.checked_at = Some(Instant::now());
        let Some(file) = &self.file else { return };
        let modified = std::fs::metadata(file).and_then(|metadata| metadata.modified()).ok();
        if modified.is_some() && modified == self.file_modified {
            return;
        }
        match std::fs::read_to_string(file) {
            Ok(text) => {
                self.from_file = text
                    .lines()
                    .map(str::trim)
                    .filter(|line| !line.is_empty() && !line.starts_with('#'))
                    .map(str::to_string)
                    .collect();
                self.file_modified = modified;
                tracing::info!(file = %file.display(), tokens = self.from_file.len(), "token file loaded");
            }
            // Keep the last good tokens: a file being rewritten must not lock everyone out.
            Err(error) => {
                tracing::warn!(file = %file.display(), %error, "cannot read token file, keeping the previous tokens")
            }
        }
    }
}

/// Compares without an early exit, so timing does not reveal how much of a token matched.
fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    if left.len() != right.len() {
        return false;
    }
    left.iter().zip(right).fold(0u8, |difference, (a, b)| difference | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(token: Option<&str>) -> Request<()> {
        let mut request = Request::new(());
        if let Some(token) = token {
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        request
    }

    #[test]
    fn test_tokens_are_checked_and_rotated_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokens");
        std::fs::write(&file, "# clients\nfirst-token\n").unwrap();
        let tokens = TokenSet::new("client", Some(file.clone()), vec!["env-token".into()])
            .with_reload_interval(Duration::ZERO);
        assert!(tokens.check(request(Some("first-token"))).is_ok());
        assert!(tokens.check(request(Some("env-token"))).is_ok());
        let missing = tokens.check(request(None)).unwrap_err();
        assert_eq!(missing.code(), tonic::Code::Unauthenticated);
        assert!(missing.message().contains("BK_TOKEN"), "{}", missing.message());
        let wrong = tokens.check(request(Some("guess"))).unwrap_err();
        assert!(!wrong.message().contains("guess") && !wrong.message().contains("first-token"));

        std::fs::write(&file, "second-token\n").unwrap();
        let bumped = SystemTime::now() + Duration::from_secs(2);
        std::fs::File::options().write(true).open(&file).unwrap().set_modified(bumped).unwrap();
        assert!(tokens.check(request(Some("second-token"))).is_ok(), "rotated token refused");
        assert!(tokens.check(request(Some("first-token"))).is_err(), "revoked token accepted");
    }

    #[test]
    fn test_without_tokens_the_api_is_open() {
        let tokens = TokenSet::new("client", None, Vec::new());
        assert!(!tokens.is_enabled());
        assert!(tokens.check(request(None)).is_ok());
    }
}
