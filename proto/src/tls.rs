//! TLS for bk's gRPC: the PEM files a server or a client is configured with, and the tonic
//! configs built from them.
//!
//! Files are read when a server starts or a client connects, so a wrong path or a file that is
//! not PEM fails at start-up with the path named, not at the first handshake.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::support::{env_override, ConfigError};
use serde::{Deserialize, Serialize};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// Returned when TLS files are missing, unreadable or inconsistent.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A configured file could not be read.
    #[error("cannot read TLS {what} `{path}`: {source}")]
    Read {
        /// Which file (`certificate`, `private key`, `CA bundle`).
        what: &'static str,
        /// The path as configured.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A configured file does not hold what it should.
    #[error("TLS {what} `{path}` holds no PEM `-----BEGIN` block: {fix}")]
    NotPem {
        /// Which file.
        what: &'static str,
        /// The path as configured.
        path: PathBuf,
        /// What to give instead.
        fix: &'static str,
    },
    /// A certificate was given without its key, or the other way round.
    #[error("{0}")]
    Incomplete(&'static str),
}

/// The files a gRPC server presents and checks clients with.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerTlsFiles {
    /// PEM certificate chain this server presents (env `BK_TLS_CERT_FILE`). Setting it turns TLS
    /// on: from then on plaintext connections are refused.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file` (env `BK_TLS_KEY_FILE`).
    pub key_file: Option<PathBuf>,
    /// PEM CA bundle client certificates must chain to (env `BK_TLS_CLIENT_CA_FILE`). Setting it
    /// requires mutual TLS: a client without a certificate signed by it is refused at the
    /// handshake, before any token is looked at.
    pub client_ca_file: Option<PathBuf>,
}

impl ServerTlsFiles {
    /// Whether the server serves TLS.
    pub fn is_enabled(&self) -> bool {
        self.cert_file.is_some() || self.key_file.is_some()
    }

    /// Whether clients must present a certificate.
    pub fn requires_client_certificates(&self) -> bool {
        self.client_ca_file.is_some()
    }

    /// Reads the files into a tonic server config; `None` when TLS is off.
    ///
    /// # Errors
    /// [`TlsError`] naming the file that is missing, unreadable or not PEM.
    pub fn load(&self) -> Result<Option<ServerTlsConfig>, TlsError> {
        let identity =
            match (&self.cert_file, &self.key_file) {
                (None, None) if self.client_ca_file.is_some() => return Err(TlsError::Incomplete(
                    "tls.client_ca_file needs tls.cert_file and tls.key_file: mutual TLS is TLS \
                     with client certificates, so the server needs its own certificate first",
                )),
                (None, None) => return Ok(None),
                (Some(cert), Some(key)) => read_identity(cert, key)?,
                _ => {
                    return Err(TlsError::Incomplete(
                        "tls.cert_file and tls.key_file go together: set both (or neither)",
                    ))
                }
            };
        let mut config = ServerTlsConfig::new().identity(identity);
        if let Some(path) = &self.client_ca_file {
            config = config.client_ca_root(read_certificate(path)?);
        }
        Ok(Some(config))
    }
}

/// The files a gRPC client trusts a server with and, for mutual TLS, presents.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientTlsFiles {
    /// PEM CA bundle the server's certificate must chain to (env `BK_TLS_CA_FILE`). Setting it
    /// turns TLS on: `host:port` endpoints are then reached over `https`.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for servers that require mutual TLS (env `BK_TLS_CERT_FILE`).
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file` (env `BK_TLS_KEY_FILE`).
    pub key_file: Option<PathBuf>,
    /// Name to check the server's certificate against, when it differs from the endpoint's host
    /// (env `BK_TLS_SERVER_NAME`).
    pub server_name: Option<String>,
}

impl ClientTlsFiles {
    /// Whether connections use TLS.
    pub fn is_enabled(&self) -> bool {
        self.ca_file.is_some()
    }

    /// Applies `BK_TLS_CA_FILE`, `BK_TLS_CERT_FILE`, `BK_TLS_KEY_FILE`, `BK_TLS_SERVER_NAME`.
    ///
    /// # Errors
    /// [`ConfigError::Env`] when a variable does not parse.
    pub fn apply_env(&mut self, env: &HashMap<String, String>) -> Result<(), ConfigError> {
        for (variable, slot) in [
            ("BK_TLS_CA_FILE", &mut self.ca_file),
            ("BK_TLS_CERT_FILE", &mut self.cert_file),
            ("BK_TLS_KEY_FILE", &mut self.key_file),
        ] {
            if let Some(value) = env_override(env, variable)? {
                *slot = Some(value);
            }
        }
        if let Some(value) = env_override(env, "BK_TLS_SERVER_NAME")? {
            self.server_name = Some(value);
        }
        Ok(())
    }

    /// Reads the files into a tonic client config; `None` when TLS is off.
    ///
    /// # Errors
    /// [`TlsError`] naming the file that is missing, unreadable or not PEM, or a client
    /// certificate given without a CA (there would be no TLS to present it over).
    pub fn load(&self) -> Result<Option<ClientTlsConfig>, TlsError> {
        let Some(ca_file) = &self.ca_file else {
            if self.cert_file.is_some() || self.key_file.is_some() {
                return Err(TlsError::Incomplete(
                    "a client certificate needs a CA bundle to verify the server with: set the \
                     CA file too (bkctl `--ca-cert`, worker `tls.ca_file`)",
                ));
            }
            return Ok(None);
        };
        let mut config = ClientTlsConfig::new().ca_certificate(read_certificate(ca_file)?);
        match (&self.cert_file, &self.key_file) {
            (None, None) => {}
            (Some(cert), Some(key)) => config = config.identity(read_identity(cert, key)?),
            _ => {
                return Err(TlsError::Incomplete(
                    "a client certificate and its key go together: set both (or neither)",
                ))
            }
        }
        if let Some(name) = &self.server_name {
            config = config.domain_name(name.clone());
        }
        Ok(Some(config))
    }
}

/// Prefixes `address` with the scheme its transport needs, unless it already has one.
pub fn endpoint_uri(address: &str, tls: bool) -> String {
    if address.starts_with("http://") || address.starts_with("https://") {
        address.to_string()
    } else if tls {
        format!("https://{address}")
    } else {
        format!("http://{address}")
    }
}

fn read_identity(cert: &Path, key: &Path) -> Result<Identity, TlsError> {
    let cert = read_pem(cert, "certificate", "give the PEM certificate (chain)")?;
    let key = read_pem(key, "private key", "give the PEM private key of the certificate")?;
    Ok(Identity::from_pem(cert, key))
}

fn read_certificate(path: &Path) -> Result<Certificate, TlsError> {
    read_pem(path, "CA bundle", "give the PEM certificate(s) of the signing CA")
        .map(Certificate::from_pem)
}

fn read_pem(path: &Path, what: &'static str, fix: &'static str) -> Result<Vec<u8>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })?;
    if !bytes.windows(10).any(|window| window == b"-----BEGIN") {
        return Err(TlsError::NotPem { what, path: path.to_path_buf(), fix });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_no_files_means_plaintext() {
        assert!(ServerTlsFiles::default().load().unwrap().is_none());
        assert!(ClientTlsFiles::default().load().unwrap().is_none());
        assert_eq!(endpoint_uri("127.0.0.1:1", false), "http://127.0.0.1:1");
        assert_eq!(endpoint_uri("127.0.0.1:1", true), "https://127.0.0.1:1");
        assert_eq!(endpoint_uri("http://h:1", true), "http://h:1");
    }

    #[test]
    fn test_half_configured_tls_names_the_missing_half() {
        let server = ServerTlsFiles { cert_file: Some("c.pem".into()), ..Default::default() };
        assert!(server.load().unwrap_err().to_string().contains("set both"));
        let mtls_only =
            ServerTlsFiles { client_ca_file: Some("ca.pem".into()), ..Default::default() };
        assert!(mtls_only.load().unwrap_err().to_string().contains("tls.cert_file"));
        let client = ClientTlsFiles { cert_file: Some("c.pem".into()), ..Default::default() };
        assert!(client.load().unwrap_err().to_string().contains("--ca-cert"));
    }

    #[test]
    fn test_unreadable_and_non_pem_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let client = ClientTlsFiles { ca_file: Some(missing.clone()), ..Default::default() };
        let error = client.load().unwrap_err().to_string();
        assert!(error.contains(&missing.display().to_string()), "{error}");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate").unwrap();
        let client = ClientTlsFiles { ca_file: Some(garbage), ..Default::default() };
        let error = client.load().unwrap_err().to_string();
        assert!(error.contains("no PEM"), "{error}");
    }
}
