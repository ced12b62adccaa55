//! TLS and mutual TLS on every gRPC connection: bkctl → replica, worker → replica, replica →
//! replica (Raft). Handshakes succeed with the right files and fail, with a clear error, without
//! them; a TLS replica refuses plaintext.

use std::path::Path;
use std::time::Duration;

use bk_tests::pki::{IssuedCert, TestCa};
use bk_tests::sandbox::Sandbox;

use crate::support::register_core_source;

/// The files of one TLS deployment: the cluster's CA, a certificate for the replicas, one for
/// clients, and a CA nobody trusts.
struct Pki {
    _dir: tempfile::TempDir,
    ca: TestCa,
    replica: IssuedCert,
    client: IssuedCert,
    rogue_client: IssuedCert,
    rogue_ca: TestCa,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::create(dir.path(), "bk").unwrap();
        let replica = ca.issue("replica").unwrap();
        let client = ca.issue("client").unwrap();
        let rogue_ca = TestCa::create(dir.path(), "rogue").unwrap();
        let rogue_client = rogue_ca.issue("rogue-client").unwrap();
        Pki { _dir: dir, ca, replica, client, rogue_client, rogue_ca }
    }

    /// The replicas' environment: TLS, and mutual TLS when `mutual`.
    fn replica_env(&self, mutual: bool) -> Vec<(&'static str, String)> {
        let ca = text(&self.ca.cert());
        let mut env = vec![
            ("BK_TLS_CERT_FILE", text(&self.replica.cert)),
            ("BK_TLS_KEY_FILE", text(&self.replica.key)),
            ("BK_TLS_CA_FILE", ca.clone()),
        ];
        if mutual {
            env.push(("BK_TLS_CLIENT_CA_FILE", ca));
        }
        env
    }
}

fn borrowed<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(key, value)| (*key, value.as_str())).collect()
}

fn text(path: &Path) -> String {
    path.display().to_string()
}

/// Registers a one-node Core source and a file repository, and backs it up with a worker
/// started with `worker_tls` (a `[tls]` table); returns whether the backup committed.
fn backup_through(sandbox: &mut Sandbox, worker_tls: &str) -> bool {
    let store = register_core_source(sandbox);
    sandbox.start_worker_with("core", "node0", &store, worker_tls).unwrap();
    let output = sandbox
        .bkctl(&["-o", "json", "submit", "backup", "--source", "core", "--repo", "repo", "--wait"])
        .unwrap();
    output.status.success()
}

fn stderr_of(sandbox: &Sandbox, args: &[&str]) -> String {
    let output = sandbox.bkctl(args).unwrap();
    assert!(!output.status.success(), "bkctl {args:?} succeeded");
    String::from_utf8_lossy(&output.stderr).to_string()
}

#[test]
fn test_tls_server_refuses_plaintext_and_untrusted_certificates() {
    let pki = Pki::new();
    let ca = text(&pki.ca.cert());
    let env = pki.replica_env(false);
    let mut sandbox = Sandbox::start_cluster(1, &borrowed(&env)).unwrap();

    let plaintext = stderr_of(&sandbox, &["status"]);
    assert!(plaintext.contains("--ca-cert"), "no hint to use TLS: {plaintext}");
    let rogue = text(&pki.rogue_ca.cert());
    sandbox.set_bkctl_env(&[("BK_CA_CERT", rogue.as_str())]);
    let untrusted = stderr_of(&sandbox, &["status"]);
    assert!(untrusted.to_lowercase().contains("certificate"), "{untrusted}");

    sandbox.set_bkctl_env(&[("BK_CA_CERT", ca.as_str())]);
    sandbox.bkctl_json(&["status"]).unwrap();
    let worker_tls = format!("[tls]\nca_file = \"{ca}\"\n");
    assert!(backup_through(&mut sandbox, &worker_tls), "backup over TLS failed");
}

#[test]
fn test_mutual_tls_between_every_process_and_refused_without_a_client_certificate() {
    let pki = Pki::new();
    let ca = text(&pki.ca.cert());
    let env = pki.replica_env(true);
    let (client_cert, client_key) = (text(&pki.client.cert), text(&pki.client.key));
    let client_env = [
        ("BK_CA_CERT", ca.as_str()),
        ("BK_CLIENT_CERT", client_cert.as_str()),
        ("BK_CLIENT_KEY", client_key.as_str()),
    ];
    // Three replicas: joining and replicating needs Raft over mutual TLS.
    let mut sandbox = Sandbox::start_cluster_with(3, &borrowed(&env), &client_env).unwrap();
    sandbox
        .wait_until(Duration::from_secs(20), "every replica to replicate over mutual TLS", || {
            let cluster = sandbox.bkctl_json(&["cluster", "status"]).ok()?;
            let replicas = cluster["replicas"].as_array()?;
            let caught_up = replicas
                .iter()
                .filter(|replica| replica["matched_index"] == cluster["last_log_index"])
                .count();
            (caught_up == 3).then_some(())
        })
        .unwrap();

    sandbox.set_bkctl_env(&[("BK_CA_CERT", ca.as_str())]);
    let no_certificate = stderr_of(&sandbox, &["status"]);
    assert!(no_certificate.contains("requires mutual TLS"), "{no_certificate}");
    let (rogue_cert, rogue_key) = (text(&pki.rogue_client.cert), text(&pki.rogue_client.key));
    sandbox.set_bkctl_env(&[
        ("BK_CA_CERT", ca.as_str()),
        ("BK_CLIENT_CERT", rogue_cert.as_str()),
        ("BK_CLIENT_KEY", rogue_key.as_str()),
    ]);
    let rogue = stderr_of(&sandbox, &["status"]);
    assert!(rogue.contains("client_ca_file"), "{rogue}");

    // A worker that trusts the cluster but has no certificate of its own cannot register.
    let store = sandbox.path().join("empty-store");
    std::fs::create_dir_all(&store).unwrap();
    let trust_only = format!("[tls]\nca_file = \"{ca}\"\n");
    sandbox.start_worker_with("core", "uncertified", &store, &trust_only).unwrap();
    let log = sandbox.path().join("worker-uncertified.log");
    let refusal = sandbox
        .wait_until(Duration::from_secs(20), "the uncertified worker to be refused", || {
            let log = std::fs::read_to_string(&log).ok()?;
            log.lines().find(|line| line.contains("cannot register yet")).map(str::to_string)
        })
        .unwrap();
    // TLS 1.3 clients learn of the refusal after their side of the handshake: as the server's
    // alert, or as the connection closing under them.
    assert!(
        ["CertificateRequired", "broken pipe", "connection closed"]
            .iter()
            .any(|cause| refusal.contains(cause)),
        "the worker's log does not say why it was refused: {refusal}"
    );
    sandbox.kill_worker("uncertified");
    let workers = sandbox.bkctl(&["-o", "json", "workers"]).unwrap();
    assert!(!String::from_utf8_lossy(&workers.stdout).contains("uncertified"));

    sandbox.set_bkctl_env(&client_env);
    let worker_tls = format!(
        "[tls]\nca_file = \"{ca}\"\ncert_file = \"{client_cert}\"\nkey_file = \"{client_key}\"\n"
    );
    assert!(backup_through(&mut sandbox, &worker_tls), "backup over mutual TLS failed");
}
