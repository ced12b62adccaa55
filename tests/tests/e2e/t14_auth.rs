//! Bearer tokens: clients and workers without the right token are refused with a clear
//! status; tokens rotate by editing the file, without a restart; secrets never reach a log.

use std::time::Duration;

use bk_tests::sandbox::Sandbox;

use crate::support::register_core_source;

const CLIENT_TOKEN: &str = "client-token-7f3a91";
const ROTATED_TOKEN: &str = "client-token-rotated-55c2";
const WORKER_TOKEN: &str = "worker-join-token-c0ffee";

#[test]
fn test_tokens_are_required_rotate_without_restart_and_never_logged() {
    let dir = tempfile::tempdir().unwrap();
    let client_tokens = dir.path().join("client-tokens");
    std::fs::write(&client_tokens, format!("# bkctl\n{CLIENT_TOKEN}\n")).unwrap();
    let client_tokens_path = client_tokens.display().to_string();
    let env = [
        ("BK_CLIENT_TOKENS_FILE", client_tokens_path.as_str()),
        ("BK_WORKER_TOKENS", WORKER_TOKEN),
    ];
    let mut sandbox = Sandbox::start_cluster(1, &env).unwrap();

    let refused = sandbox.bkctl(&["sources"]).unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("missing bearer token") && stderr.contains("BK_TOKEN"), "{stderr}");
    sandbox.set_token(Some("not-a-token"));
    let stderr = String::from_utf8_lossy(&sandbox.bkctl(&["sources"]).unwrap().stderr).to_string();
    assert!(stderr.contains("invalid bearer token") && !stderr.contains("not-a-token"), "{stderr}");

    sandbox.set_token(Some(CLIENT_TOKEN));
    let store = register_core_source(&sandbox);

    // A worker without the join token cannot register: the job waits, saying no worker is there.
    sandbox.start_worker("core", "node0", &store).unwrap();
    let submitted =
        sandbox.bkctl_json(&["submit", "backup", "--source", "core", "--repo", "repo"]).unwrap();
    let job_id = submitted["job_id"].as_str().unwrap().to_string();
    let reason = sandbox
        .wait_until(Duration::from_secs(20), "a waiting reason", || {
            let job = sandbox.bkctl_json(&["job", &job_id]).ok()?;
            let reason = job["phases"][0]["tasks"][0]["waiting_reason"].as_str()?.to_string();
            (!reason.is_empty()).then_some(reason)
        })
        .unwrap();
    assert!(reason.contains("none registered for node `node0`"), "{reason}");
    sandbox.kill_worker("node0");
    sandbox
        .start_worker_with("core", "node0", &store, &format!("join_token = \"{WORKER_TOKEN}\""))
        .unwrap();
    let watched = sandbox.bkctl(&["-o", "json", "watch", &job_id]).unwrap();
    assert!(
        watched.status.success(),
        "backup with a joined worker failed: {}",
        String::from_utf8_lossy(&watched.stdout)
    );

    // Rotation: the file now holds only the new token; no restart.
    std::fs::write(&client_tokens, format!("{ROTATED_TOKEN}\n")).unwrap();
    let file = std::fs::File::options().write(true).open(&client_tokens).unwrap();
    file.set_modified(std::time::SystemTime::now() + Duration::from_secs(2)).unwrap();
    sandbox.set_token(Some(ROTATED_TOKEN));
    sandbox
        .wait_until(Duration::from_secs(10), "the rotated token to be accepted", || {
            sandbox.bkctl_json(&["jobs"]).ok()
        })
        .unwrap();
    sandbox.set_token(Some(CLIENT_TOKEN));
    assert!(
        !sandbox.bkctl(&["jobs"]).unwrap().status.success(),
        "the revoked token is still accepted"
    );

    // No secret in any log, job record or bkctl output.
    sandbox.set_token(Some(ROTATED_TOKEN));
    let records = sandbox.bkctl(&["-o", "json", "job", &job_id]).unwrap();
    let mut haystack = String::from_utf8_lossy(&records.stdout).to_string();
    for entry in std::fs::read_dir(sandbox.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|extension| extension == "log") {
            haystack.push_str(&std::fs::read_to_string(&path).unwrap());
        }
    }
    for secret in
        [CLIENT_TOKEN, ROTATED_TOKEN, WORKER_TOKEN, bk_tests::sandbox::REPOSITORY_PASSPHRASE]
    {
        assert!(!haystack.contains(secret), "a secret reached a log or record");
    }
}
