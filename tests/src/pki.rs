//! Throw-away certificate authorities for TLS tests, made with the `openssl` command line tool
//! (EC P-256 keys, PEM, valid for two days).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

/// A certificate authority whose key and certificate live in a directory.
pub struct TestCa {
    dir: PathBuf,
    name: String,
}

/// A certificate issued by a [`TestCa`], with its private key.
pub struct IssuedCert {
    /// PEM certificate.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8).
    pub key: PathBuf,
}

impl TestCa {
    /// Creates CA `name` in `dir` (`<name>-ca.crt`, `<name>-ca.key`).
    ///
    /// # Errors
    /// When `openssl` is missing or fails.
    pub fn create(dir: &Path, name: &str) -> anyhow::Result<Self> {
        let ca = Self { dir: dir.to_path_buf(), name: name.to_string() };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name} test CA"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            path_str(&ca.key())?,
            "-out",
            path_str(&ca.cert())?,
        ])?;
        Ok(ca)
    }

    /// The CA's PEM certificate (what clients and servers are told to trust).
    pub fn cert(&self) -> PathBuf {
        self.dir.join(format!("{}-ca.crt", self.name))
    }

    fn key(&self) -> PathBuf {
        self.dir.join(format!("{}-ca.key", self.name))
    }

    /// Issues `<subject>.crt`/`.key` for `127.0.0.1` and `localhost`, usable as a server and as a
    /// client certificate.
    ///
    /// # Errors
    /// When `openssl` fails.
    pub fn issue(&self, subject: &str) -> anyhow::Result<IssuedCert> {
        let issued = IssuedCert {
            cert: self.dir.join(format!("{subject}.crt")),
            key: self.dir.join(format!("{subject}.key")),
        };
        let request = self.dir.join(format!("{subject}.csr"));
        let extensions = self.dir.join(format!("{subject}.ext"));
        std::fs::write(
            &extensions,
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )?;
        openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &format!("/CN={subject}"),
            "-keyout",
            path_str(&issued.key)?,
            "-out",
            path_str(&request)?,
        ])?;
        openssl(&[
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            path_str(&request)?,
            "-CA",
            path_str(&self.cert())?,
            "-CAkey",
            path_str(&self.key())?,
            "-CAcreateserial",
            "-extfile",
            path_str(&extensions)?,
            "-out",
            path_str(&issued.cert)?,
        ])?;
        Ok(issued)
    }
}

fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str().with_context(|| format!("`{}` is not UTF-8", path.display()))
}

fn openssl(args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("openssl")
        .args(args)
        .output()
        .context("failed to run `openssl` (install it: `apt-get install openssl`)")?;
    if !output.status.success() {
        bail!("openssl {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(())
}
