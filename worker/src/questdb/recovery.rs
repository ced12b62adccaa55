//! Making a restored QuestDB root recover from its checkpoint on the next start
//! (`questdb-checkpoint.md` §2 and §5b).
//!
//! Two mechanisms, chosen by what the backup holds, not by a version the restore cannot know:
//! - `.checkpoint/db/` (a `CHECKPOINT CREATE`, 8.1.1+): the empty `_restore` file in the root.
//! - `snapshot/db/_snapshot` (a `SNAPSHOT PREPARE`, which bk sends to servers before 8.1.1):
//!   servers before 8.1.0 have no `_restore` trigger. They recover only when their
//!   `cairo.snapshot.instance.id` is set and differs from the id stored in `_snapshot`, and
//!   every later version still honours that. So the restore writes a fresh id into the restored
//!   `conf/server.conf` (and, when the snapshot stored none, an id into `_snapshot`, since an
//!   empty stored id disables recovery), and writes no `_restore`: left behind on a server
//!   that ignores it, it would make a later upgrade refuse to start (the trigger without a
//!   checkpoint directory).

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::error::TaskError;

/// The key QuestDB reads its snapshot instance id from.
pub const INSTANCE_ID_KEY: &str = "cairo.snapshot.instance.id";
/// The file with QuestDB's configuration, relative to the root.
pub const SERVER_CONF: &str = "conf/server.conf";
/// The legacy snapshot's meta file: the instance id as a QuestDB string.
pub const SNAPSHOT_META: &str = "snapshot/db/_snapshot";
/// The text copy of the id some versions also write (and read when `_snapshot` is unreadable).
const SNAPSHOT_META_TEXT: &str = "snapshot/db/_snapshot.txt";
/// The id bk stores in a snapshot whose server had none.
const STORED_ID_WHEN_EMPTY: &str = "bk-backup";

/// How the restored root will recover.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Armed {
    /// `_restore` written next to `.checkpoint/`.
    RestoreFile,
    /// `cairo.snapshot.instance.id` set to `current` in `conf/server.conf`; the snapshot holds
    /// `previous` (written by bk when `stored_by_bk`).
    InstanceId {
        /// The id now in the restored configuration.
        current: String,
        /// The id in the snapshot.
        previous: String,
        /// Whether the snapshot stored no id and bk wrote `previous`.
        stored_by_bk: bool,
    },
}

impl Armed {
    /// What the operator reads on the restore job.
    pub fn explain(&self, target: &str) -> String {
        match self {
            Armed::RestoreFile => format!(
                "restore written to `{target}` with the `_restore` trigger: start QuestDB now (same major version as \
                 the backup). On start it finds `_restore`, recovers every table from `.checkpoint/` (rebuilding symbol \
                 maps, dropping partitions newer than the checkpoint), deletes `_restore` and the checkpoint, then runs \
                 normally; if recovery fails it exits and leaves `_restore` in place, so fix the cause and start it again"
            ),
            Armed::InstanceId { current, previous, stored_by_bk } => format!(
                "restore written to `{target}` from a legacy snapshot (`SNAPSHOT PREPARE`, QuestDB before 8.1.1): servers \
                 before 8.1.0 have no `_restore` trigger and recover only when their `{INSTANCE_ID_KEY}` differs from the \
                 snapshot's, so bk set `{INSTANCE_ID_KEY}={current}` in `{SERVER_CONF}` (the snapshot holds \
                 `{previous}`{}). Start QuestDB now (same major version as the backup): it logs `starting snapshot \
                 recovery`, recovers every table from `snapshot/` and deletes `snapshot/db/`. An environment variable \
                 QDB_CAIRO_SNAPSHOT_INSTANCE_ID on that server overrides the file: unset it or give it another value \
                 than `{previous}`",
                if *stored_by_bk { ", written by bk: the server had none" } else { "" }
            ),
        }
    }
}

/// Arms recovery in the restored root `target`; `restore_name` makes the new instance id
/// unique to this restore.
///
/// # Errors
/// [`TaskError::Invalid`] when the root holds no checkpoint at all; store errors.
pub async fn arm_recovery(
    target: &dyn ObjectStore,
    restore_name: &str,
) -> Result<Armed, TaskError> {
    if has_objects(target, ".checkpoint/db/").await? {
        put(target, "_restore", Vec::new()).await?;
        return Ok(Armed::RestoreFile);
    }
    let Some(meta) = read_optional(target, SNAPSHOT_META).await? else {
        return Err(TaskError::Invalid(
            "the restored root holds no checkpoint (neither `.checkpoint/db/` nor `snapshot/db/_snapshot`): the backup \
             was not taken in checkpoint mode, and QuestDB has nothing consistent to recover from"
                .to_string(),
        ));
    };
    let stored = decode_questdb_string(&meta).unwrap_or_default();
    let stored_by_bk = stored.is_empty();
    let previous = if stored_by_bk { STORED_ID_WHEN_EMPTY.to_string() } else { stored };
    if stored_by_bk {
        put(target, SNAPSHOT_META, encode_questdb_string(&previous)).await?;
        if read_optional(target, SNAPSHOT_META_TEXT).await?.is_some() {
            put(target, SNAPSHOT_META_TEXT, previous.clone().into_bytes()).await?;
        }
    }
    let mut current = format!("bk-restore-{restore_name}");
    if current == previous {
        current.push_str("-again");
    }
    let conf = read_optional(target, SERVER_CONF).await?.unwrap_or_default();
    let conf = set_property(&String::from_utf8_lossy(&conf), INSTANCE_ID_KEY, &current);
    put(target, SERVER_CONF, conf.into_bytes()).await?;
    Ok(Armed::InstanceId { current, previous, stored_by_bk })
}

/// QuestDB's string in a file: a little-endian `i32` count of UTF-16 units, then the units
/// (little-endian); a negative count is null.
pub fn encode_questdb_string(text: &str) -> Vec<u8> {
    let units: Vec<u16> = text.encode_utf16().collect();
    let mut bytes = (units.len() as i32).to_le_bytes().to_vec();
    for unit in units {
        bytes.extend_from_slice(&unit.to_le_bytes());
    }
    bytes
}

/// Reads what [`encode_questdb_string`] writes; `None` when the bytes are not such a string.
pub fn decode_questdb_string(bytes: &[u8]) -> Option<String> {
    let count = i32::from_le_bytes(bytes.get(..4)?.try_into().ok()?);
    if count < 0 {
        return Some(String::new());
    }
    let units: Vec<u16> = bytes
        .get(4..4 + 2 * count as usize)?
        .chunks_exact(2)
        .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
        .collect();
    String::from_utf16(&units).ok()
}

/// `conf` with `key=value`: the last line that sets `key` replaced (QuestDB reads the file as
/// Java properties, where the last one wins), or the line appended.
pub fn set_property(conf: &str, key: &str, value: &str) -> String {
    let sets_key = |line: &str| {
        let line = line.trim_start();
        line.strip_prefix(key).is_some_and(|rest| {
            let rest = rest.trim_start();
            rest.starts_with('=') || rest.starts_with(':')
        })
    };
    let mut lines: Vec<String> = conf.lines().map(str::to_string).collect();
    let line = format!("{key}={value}");
    match lines.iter().rposition(|existing| sets_key(existing)) {
        Some(index) => lines[index] = line,
        None => lines.push(line),
    }
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// The value the last line setting `key` gives, if any.
pub fn property<'a>(conf: &'a str, key: &str) -> Option<&'a str> {
    conf.lines().rev().find_map(|line| {
        let rest = line.trim_start().strip_prefix(key)?.trim_start();
        let value = rest.strip_prefix('=').or_else(|| rest.strip_prefix(':'))?;
        Some(value.trim())
    })
}

async fn has_objects(target: &dyn ObjectStore, prefix: &str) -> Result<bool, TaskError> {
    use futures::StreamExt;
    let path = Path::from(prefix.trim_end_matches('/'));
    match target.list(Some(&path)).next().await {
        None => Ok(false),
        Some(Ok(_)) => Ok(true),
        Some(Err(source)) => Err(TaskError::Target { key: prefix.to_string(), source }),
    }
}

async fn read_optional(target: &dyn ObjectStore, key: &str) -> Result<Option<Vec<u8>>, TaskError> {
    let error = |source| TaskError::Target { key: key.to_string(), source };
    match target.get(&Path::from(key)).await {
        Ok(found) => Ok(Some(found.bytes().await.map_err(error)?.to_vec())),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(source) => Err(error(source)),
    }
}

async fn put(target: &dyn ObjectStore, key: &str, bytes: Vec<u8>) -> Result<(), TaskError> {
    target
        .put(&Path::from(key), PutPayload::from(bytes))
        .await
        .map(|_| ())
        .map_err(|source| TaskError::Target { key: key.to_string(), source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    #[test]
    fn test_questdb_strings_round_trip_as_utf16_with_a_count() {
        assert_eq!(encode_questdb_string("ab"), [2, 0, 0, 0, b'a', 0, b'b', 0]);
        for text in ["", "original-instance", "zürich-1"] {
            assert_eq!(decode_questdb_string(&encode_questdb_string(text)).as_deref(), Some(text));
        }
        assert_eq!(decode_questdb_string(&(-1i32).to_le_bytes()).as_deref(), Some(""));
        assert_eq!(decode_questdb_string(&[9, 0, 0, 0, b'a', 0]), None, "truncated");
        assert_eq!(decode_questdb_string(&[1, 0]), None, "shorter than the count");
    }

    #[test]
    fn test_the_instance_id_replaces_the_last_setting_or_is_appended() {
        // (case, conf before, conf after)
        let cases = [
            ("absent", "pg.enabled=true\n", "pg.enabled=true\ncairo.snapshot.instance.id=new\n"),
            ("empty file", "", "cairo.snapshot.instance.id=new\n"),
            (
                "set twice: the last wins, so it is the one replaced",
                "cairo.snapshot.instance.id=a\n# note\ncairo.snapshot.instance.id = b\n",
                "cairo.snapshot.instance.id=a\n# note\ncairo.snapshot.instance.id=new\n",
            ),
            (
                "a longer key with the same start is another key",
                "cairo.snapshot.instance.id.extra=x\n",
                "cairo.snapshot.instance.id.extra=x\ncairo.snapshot.instance.id=new\n",
            ),
        ];
        for (case, before, after) in cases {
            assert_eq!(set_property(before, INSTANCE_ID_KEY, "new"), after, "{case}");
            assert_eq!(property(after, INSTANCE_ID_KEY), Some("new"), "{case}");
        }
    }

    async fn root(files: &[(&str, Vec<u8>)]) -> InMemory {
        let store = InMemory::new();
        for (key, bytes) in files {
            put(&store, key, bytes.clone()).await.unwrap();
        }
        store
    }

    async fn text(store: &InMemory, key: &str) -> Option<String> {
        read_optional(store, key).await.unwrap().map(|bytes| String::from_utf8_lossy(&bytes).into())
    }

    #[tokio::test]
    async fn test_a_checkpoint_is_armed_with_the_restore_file_and_the_conf_left_alone() {
        let store = root(&[
            (".checkpoint/db/_checkpoint_meta.d", vec![1]),
            (SERVER_CONF, b"pg.enabled=true\n".to_vec()),
        ])
        .await;
        assert_eq!(arm_recovery(&store, "job-1").await.unwrap(), Armed::RestoreFile);
        assert_eq!(text(&store, "_restore").await.as_deref(), Some(""));
        assert_eq!(text(&store, SERVER_CONF).await.as_deref(), Some("pg.enabled=true\n"));
    }

    #[tokio::test]
    async fn test_a_legacy_snapshot_gets_a_new_instance_id_and_no_restore_file() {
        let store = root(&[
            (SNAPSHOT_META, encode_questdb_string("original-instance")),
            (SERVER_CONF, b"cairo.snapshot.instance.id=original-instance\n".to_vec()),
        ])
        .await;
        let armed = arm_recovery(&store, "job-7").await.unwrap();
        assert_eq!(
            armed,
            Armed::InstanceId {
                current: "bk-restore-job-7".to_string(),
                previous: "original-instance".to_string(),
                stored_by_bk: false
            }
        );
        assert_eq!(text(&store, "_restore").await, None);
        let conf = text(&store, SERVER_CONF).await.unwrap();
        assert_eq!(property(&conf, INSTANCE_ID_KEY), Some("bk-restore-job-7"));
        let meta = read_optional(&store, SNAPSHOT_META).await.unwrap().unwrap();
        assert_eq!(decode_questdb_string(&meta).as_deref(), Some("original-instance"));
    }

    #[tokio::test]
    async fn test_a_snapshot_without_an_id_gets_one_since_an_empty_id_disables_recovery() {
        let store =
            root(&[(SNAPSHOT_META, encode_questdb_string("")), (SNAPSHOT_META_TEXT, Vec::new())])
                .await;
        let armed = arm_recovery(&store, "job-2").await.unwrap();
        let Armed::InstanceId { current, previous, stored_by_bk } = armed else {
            panic!("armed with the restore file")
        };
        assert!(stored_by_bk);
        assert_ne!(current, previous);
        let meta = read_optional(&store, SNAPSHOT_META).await.unwrap().unwrap();
        assert_eq!(decode_questdb_string(&meta), Some(previous.clone()));
        assert_eq!(text(&store, SNAPSHOT_META_TEXT).await, Some(previous));
        let conf = text(&store, SERVER_CONF).await.unwrap();
        assert_eq!(property(&conf, INSTANCE_ID_KEY), Some(current.as_str()));
    }

    #[tokio::test]
    async fn test_a_root_without_a_checkpoint_is_refused() {
        let store = root(&[("db/trades/_meta", vec![1])]).await;
        let error = arm_recovery(&store, "job-3").await.unwrap_err().to_string();
        assert!(error.contains("holds no checkpoint"), "{error}");
        assert_eq!(text(&store, "_restore").await, None);
    }
}
