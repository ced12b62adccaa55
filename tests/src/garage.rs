//! A real S3-compatible server for the tests: Garage, run as a single-node process on loopback
//! with one bucket and one key, stopped when dropped.
//!
//! Garage is installed by `.ci/run` (`cargo install garage@2.5.0 --locked`). It ignores
//! `If-None-Match` on PutObject, so tests against it also prove that bk's correctness does not
//! rest on create-only writes alone.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// The bucket every test uses (prefixes keep tests apart).
pub const BUCKET: &str = "bk-test";
/// The access key id Garage is started with.
pub const ACCESS_KEY_ID: &str = "GK0123456789abcdef01234567";
/// The secret key Garage is started with: tests grep logs and records for it.
pub const SECRET_ACCESS_KEY: &str =
    "5ec12e7b0a5ec12e7b0a5ec12e7b0a5ec12e7b0a5ec12e7b0a5ec12e7b0a5ec1";
/// Garage's node-to-node secret (unused by a single node, required by its config).
const RPC_SECRET: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
/// The region Garage answers to.
pub const REGION: &str = "garage";

/// A running Garage server.
pub struct Garage {
    child: Child,
    endpoint: String,
    binary: PathBuf,
    config_path: PathBuf,
}

impl Garage {
    /// Starts Garage with its data under `dir` and waits until its S3 API answers.
    ///
    /// # Errors
    /// When the binary is missing (the message says how to install it) or it does not start.
    pub fn start(dir: &Path) -> anyhow::Result<Self> {
        let binary = garage_binary().context(
            "garage is not installed: run `cargo install garage@2.5.0 --locked` (.ci/run does)",
        )?;
        let [rpc_port, s3_port] = free_ports()?;
        std::fs::create_dir_all(dir)?;
        let config = format!(
            "metadata_dir = \"{dir}/meta\"\ndata_dir = \"{dir}/data\"\ndb_engine = \"sqlite\"\n\
             replication_factor = 1\nrpc_bind_addr = \"127.0.0.1:{rpc_port}\"\n\
             rpc_public_addr = \"127.0.0.1:{rpc_port}\"\nrpc_secret = \"{RPC_SECRET}\"\n\
             [s3_api]\ns3_region = \"{REGION}\"\napi_bind_addr = \"127.0.0.1:{s3_port}\"\n\
             root_domain = \".s3.garage.localhost\"\n",
            dir = dir.display()
        );
        let config_path = dir.join("garage.toml");
        std::fs::write(&config_path, config)?;
        let log = std::fs::File::create(dir.join("garage.log"))?;
        let child = Command::new(&binary)
            .arg("-c")
            .arg(&config_path)
            .args(["server", "--single-node", "--default-bucket"])
            .env("GARAGE_DEFAULT_ACCESS_KEY", ACCESS_KEY_ID)
            .env("GARAGE_DEFAULT_SECRET_KEY", SECRET_ACCESS_KEY)
            .env("GARAGE_DEFAULT_BUCKET", BUCKET)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start garage")?;
        let mut garage =
            Self { child, endpoint: format!("http://127.0.0.1:{s3_port}"), binary, config_path };
        garage.wait_ready(s3_port, rpc_port, dir)?;
        Ok(garage)
    }

    /// How the server ended, if it has: a test that outlives its store must say so rather than
    /// blame what it tests.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// object_store options that reach this server, the secret given as a file (as operators
    /// should), as an inline TOML table.
    pub fn options_toml(&self, secret_file: &Path) -> String {
        self.options_toml_at(&self.endpoint, secret_file)
    }

    /// As [`Garage::options_toml`], reaching the server through `endpoint` (e.g. a proxy).
    pub fn options_toml_at(&self, endpoint: &str, secret_file: &Path) -> String {
        format!(
            "{{ aws_endpoint = \"{}\", aws_allow_http = \"true\", aws_region = \"{REGION}\", \
             aws_access_key_id = \"{ACCESS_KEY_ID}\", aws_secret_access_key_file = \"{}\" }}",
            endpoint,
            secret_file.display()
        )
    }

    /// object_store options that reach this server, secret inline: for tests that look into a
    /// bucket themselves.
    pub fn options(&self) -> std::collections::BTreeMap<String, String> {
        [
            ("aws_endpoint", self.endpoint.as_str()),
            ("aws_allow_http", "true"),
            ("aws_region", REGION),
            ("aws_access_key_id", ACCESS_KEY_ID),
            ("aws_secret_access_key", SECRET_ACCESS_KEY),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
    }

    /// Ready when an anonymous `GET /` gets an HTTP answer (403: no credentials) and the RPC
    /// port listens too: Garage can answer on S3 and then exit because its RPC bind failed.
    fn wait_ready(&mut self, port: u16, rpc_port: u16, dir: &Path) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("garage exited ({status}); see {}", dir.join("garage.log").display());
            }
            if http_answers(port) && TcpStream::connect(("127.0.0.1", rpc_port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("garage did not answer within 60 s; see {}", dir.join("garage.log").display())
    }
}

impl Garage {
    /// Creates bucket `name` and lets the test key read and write it.
    ///
    /// # Errors
    /// When the `garage` CLI fails.
    pub fn create_bucket(&self, name: &str) -> anyhow::Result<()> {
        let steps: [&[&str]; 2] = [
            &["bucket", "create", name],
            &["bucket", "allow", "--read", "--write", "--owner", name, "--key", ACCESS_KEY_ID],
        ];
        for args in steps {
            let output = Command::new(&self.binary)
                .arg("-c")
                .arg(&self.config_path)
                .args(args)
                .output()
                .context("cannot run the garage CLI")?;
            if !output.status.success() {
                bail!("garage {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
            }
        }
        Ok(())
    }

    /// The standard `AWS_*` variables that reach this server (the secret included): how a
    /// worker gets credentials from its environment.
    pub fn environment(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT", self.endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_REGION", REGION),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_answers(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.")
}

/// Free ports, distinct: each listener is held until all are chosen (ports picked one after
/// the other could be the same one, and Garage died binding RPC and S3 to one port).
fn free_ports<const N: usize>() -> anyhow::Result<[u16; N]> {
    let listeners: Vec<TcpListener> =
        (0..N).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<Result<_, _>>()?;
    let mut ports = [0; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener.local_addr()?.port();
    }
    Ok(ports)
}

fn garage_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").into_iter().flat_map(|paths| {
        std::env::split_paths(&paths).map(|dir| dir.join("garage")).collect::<Vec<_>>()
    });
    let in_cargo =
        std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo/bin/garage"));
    on_path.chain(in_cargo).find(|path| path.is_file())
}
