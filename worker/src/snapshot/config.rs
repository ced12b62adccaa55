//! The worker's `[snapshot]` section.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How the worker captures the store's files at one instant before copying them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Copy the live files (today's behaviour).
    #[default]
    None,
    /// A read-only btrfs snapshot of the store's subvolume: atomic.
    Btrfs,
    /// A copy-on-write clone of the tree (`cp --reflink=always`, XFS and btrfs): instant per
    /// file but not atomic across files, so for QuestDB only (its checkpoint makes it whole).
    Reflink,
    /// A thin snapshot of the store's logical volume, mounted read-only: atomic.
    Lvm,
    /// The operator's `create` / `delete` commands (EBS, GCE PD, Azure disk, ZFS, …): atomic
    /// if the operator's snapshot is.
    Command,
    /// The first of `btrfs`, `lvm`, `reflink` (QuestDB only) that works on the store, or none.
    Auto,
}

impl Method {
    /// As written in the config and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::None => "none",
            Method::Btrfs => "btrfs",
            Method::Reflink => "reflink",
            Method::Lvm => "lvm",
            Method::Command => "command",
            Method::Auto => "auto",
        }
    }

    /// Whether every file is captured at the same instant.
    pub fn is_atomic(self) -> bool {
        matches!(self, Method::Btrfs | Method::Lvm | Method::Command)
    }
}

/// `[snapshot]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConfig {
    /// The method.
    #[serde(default)]
    pub method: Method,
    /// Where snapshots are created or mounted (`<scratch>/bk-<job>`). `btrfs` and `reflink`
    /// need it on the store's filesystem; it must not be inside the store.
    #[serde(default)]
    pub scratch: Option<PathBuf>,
    /// `command`: creates the snapshot and prints, as its last line, the directory where the
    /// store's files can be read. Runs with `sh -c` and `BK_SNAPSHOT_NAME`,
    /// `BK_SNAPSHOT_SOURCE` (the store's directory) and `BK_SNAPSHOT_SCRATCH` set.
    #[serde(default)]
    pub create: Option<String>,
    /// `command`: deletes it (unmount, detach, delete). Must succeed when the snapshot is
    /// already gone: it runs again after a crash. Gets `BK_SNAPSHOT_NAME`, `BK_SNAPSHOT_PATH`
    /// (what `create` printed, empty if it never finished) and `BK_SNAPSHOT_SOURCE`.
    #[serde(default)]
    pub delete: Option<String>,
    /// How long one command (or `btrfs`, `cp`, `lvcreate`, `mount`) may take.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(120)
}

impl SnapshotConfig {
    /// The settings for deleting a snapshot taken with `method` on a worker whose own
    /// `[snapshot]` is absent (another worker of the node took it; the record names the rest).
    pub fn for_deleting(method: Method) -> Self {
        Self { method, scratch: None, create: None, delete: None, timeout: default_timeout() }
    }

    /// Whether backups of this worker's store go through a snapshot.
    pub fn enabled(&self) -> bool {
        self.method != Method::None
    }

    /// Checks what each method needs, at start-up.
    ///
    /// # Errors
    /// What is missing, and how to fix it.
    pub fn validate(&self, store_root: Option<&std::path::Path>) -> Result<(), String> {
        if !self.enabled() {
            return Ok(());
        }
        let method = self.method.as_str();
        if self.method == Method::Command {
            if self.create.as_deref().is_none_or(|line| line.trim().is_empty())
                || self.delete.as_deref().is_none_or(|line| line.trim().is_empty())
            {
                return Err(
                    "[snapshot] method = \"command\" needs both `create` and `delete` commands"
                        .to_string(),
                );
            }
        } else if self.create.is_some() || self.delete.is_some() {
            return Err(format!(
                "[snapshot] `create` / `delete` are for method = \"command\", not \"{method}\""
            ));
        }
        let Some(scratch) = &self.scratch else {
            if self.method == Method::Command {
                return Ok(());
            }
            return Err(format!(
                "[snapshot] method = \"{method}\" needs `scratch`: the directory where snapshots are created or mounted"
            ));
        };
        if !scratch.is_absolute() {
            return Err(format!(
                "[snapshot] scratch `{}` must be an absolute path",
                scratch.display()
            ));
        }
        if let Some(root) = store_root {
            if scratch.starts_with(root) {
                return Err(format!(
                    "[snapshot] scratch `{}` is inside the store `{}`: the backup would copy its own snapshots; put it \
                     next to the store instead",
                    scratch.display(),
                    root.display()
                ));
            }
        } else {
            return Err(format!(
                "[snapshot] method = \"{method}\" needs the store to be a local directory (file:///path)"
            ));
        }
        Ok(())
    }

    /// The scratch directory, for methods that need one.
    ///
    /// # Errors
    /// When none is configured.
    pub fn scratch(&self) -> Result<&std::path::Path, String> {
        self.scratch.as_deref().ok_or_else(|| {
            format!("[snapshot] method = \"{}\" needs `scratch`", self.method.as_str())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> SnapshotConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn test_each_method_is_checked_for_what_it_needs() {
        let root = std::path::Path::new("/srv/questdb");
        // (case, config, error it contains, or "" when valid)
        let cases = [
            ("none needs nothing", "", ""),
            ("btrfs with scratch", "method = \"btrfs\"\nscratch = \"/srv/snaps\"", ""),
            ("btrfs without scratch", "method = \"btrfs\"", "needs `scratch`"),
            (
                "scratch inside the store",
                "method = \"reflink\"\nscratch = \"/srv/questdb/snaps\"",
                "inside the store",
            ),
            ("relative scratch", "method = \"lvm\"\nscratch = \"snaps\"", "absolute"),
            (
                "command without delete",
                "method = \"command\"\ncreate = \"x\"",
                "both `create` and `delete`",
            ),
            ("command", "method = \"command\"\ncreate = \"x\"\ndelete = \"y\"", ""),
            (
                "create for btrfs",
                "method = \"btrfs\"\nscratch = \"/s\"\ncreate = \"x\"",
                "for method = \"command\"",
            ),
        ];
        for (case, text, error) in cases {
            match config(text).validate(Some(root)) {
                Ok(()) => assert!(error.is_empty(), "{case}: valid, expected `{error}`"),
                Err(found) => {
                    assert!(!error.is_empty() && found.contains(error), "{case}: {found}")
                }
            }
        }
        let remote = config("method = \"btrfs\"\nscratch = \"/s\"").validate(None).unwrap_err();
        assert!(remote.contains("local directory"), "{remote}");
    }
}
