//! The depth-first walk behind [`super::list_tree`]: each directory opened relative to its
//! parent's descriptor and read into one reused buffer, each file `stat`ed relative to its
//! directory; with a memo, an unchanged directory is not read at all (see [`super::memo`]).

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use object_store::{ObjectMeta, Result};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, RawDir, Statx, StatxFlags, CWD};
use rustix::io::Errno;

use super::memo::{trusted_file_system, FileFacts, Identity, MemoEntry, MemoSession};
use super::meta::{generic, is_upload_in_progress, object_meta, object_meta_of};

/// Bytes of the buffer directories are read into (`getdents64`).
const DIRENT_BUFFER: usize = 32 << 10;

/// What a file's `statx` asks for: what its entry in the listing needs.
const STAT_FIELDS: StatxFlags =
    StatxFlags::TYPE.union(StatxFlags::INO).union(StatxFlags::SIZE).union(StatxFlags::MTIME);

/// What a directory's `statx` asks for: its identity (the device always comes).
const DIR_FIELDS: StatxFlags = STAT_FIELDS.union(StatxFlags::CTIME);

/// A depth-first walk: the open directories from the root down, each with its children still
/// to visit (sorted).
pub(super) struct Walker {
    stack: Vec<OpenDir>,
    /// The root, not opened yet, and the memo file to use.
    start: Option<(PathBuf, String, Option<PathBuf>)>,
    root: PathBuf,
    memo: Option<MemoSession>,
    /// The store is written in whole files (see [`super::list_tree`]): a file's facts are
    /// taken with its directory and, while the directory is unchanged, from the memo.
    whole_files: bool,
    buffer: Vec<MaybeUninit<u8>>,
    /// The time a directory is read at (the real clock; tests move it on).
    clock: fn() -> SystemTime,
    /// Directories read, and answered from the memo.
    pub(super) dirs_read: u64,
    pub(super) dirs_remembered: u64,
    /// Files `stat`ed.
    pub(super) files_stated: u64,
}

/// A directory being visited.
struct OpenDir {
    /// A descriptor to reach it by: its own, or its parent's with `via` its name (a directory
    /// the memo answered for and that holds no directories is never opened).
    fd: Arc<OwnedFd>,
    via: Option<String>,
    children: std::vec::IntoIter<Child>,
    /// Its key, without a trailing `/` (empty for the store's root).
    key: String,
    /// Its path relative to the walk's root (empty for the root).
    rel: String,
    /// Device and inode, to refuse a symlink that loops back to it (when known).
    identity: Option<((u32, u32), u64)>,
}

/// A directory entry still to visit.
struct Child {
    name: String,
    kind: Kind,
    /// A symlink's target (followed), or an entry whose type its directory did not tell,
    /// `stat`ed when the directory was read: what it is decides where it sorts.
    followed: Option<Box<Statx>>,
    /// A regular file's facts, taken with its directory or from the memo (whole files only).
    facts: Option<FileFacts>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    /// Anything else: `stat`ed when visited (unless followed already), listed if a file.
    Other,
}

impl Walker {
    /// A walk of `dir`, whose key is `key`, remembering directories in `memo` when given;
    /// `whole_files`: the store is written in whole files (see [`super::list_tree`]).
    pub(super) fn new(dir: PathBuf, key: String, memo: Option<PathBuf>, whole_files: bool) -> Self {
        Self {
            stack: Vec::new(),
            root: dir.clone(),
            start: Some((dir, key, memo)),
            memo: None,
            whole_files,
            buffer: Vec::with_capacity(DIRENT_BUFFER),
            clock: SystemTime::now,
            dirs_read: 0,
            dirs_remembered: 0,
            files_stated: 0,
        }
    }

    /// The same walk with another clock (tests: a clock ahead makes every directory settled).
    #[cfg(test)]
    pub(super) fn with_clock(mut self, clock: fn() -> SystemTime) -> Self {
        self.clock = clock;
        self
    }

    /// Opens the root; a missing root (or a file) lists nothing, as object_store's walk does.
    fn open_root(&mut self, dir: PathBuf, key: String, memo: Option<PathBuf>) -> Result<()> {
        let fd = match rustix::fs::openat(CWD, &dir, dir_flags(), Mode::empty()) {
            Ok(fd) => fd,
            // A missing root, or a file: nothing to list.
            Err(Errno::NOENT | Errno::NOTDIR) => return Ok(()),
            Err(error) => return Err(self.io_error("", error)),
        };
        let read_at = (self.clock)();
        let identity = rustix::fs::statx(&fd, "", AtFlags::EMPTY_PATH, DIR_FIELDS)
            .map_err(|error| self.io_error("", error))?;
        let identity = Identity::of(&identity);
        if let Some(memo) = memo.filter(|_| trusted_file_system(&fd)) {
            self.memo = Some(MemoSession::start(memo, identity.dev_ino().0));
        }
        let fd = Arc::new(fd);
        self.enter(fd, None, key, String::new(), identity, read_at)
    }

    /// Visits the directory reached by `fd` (and `via`), answering from the memo when it holds
    /// this directory unchanged, else reading it.
    fn enter(
        &mut self,
        fd: Arc<OwnedFd>,
        via: Option<String>,
        key: String,
        rel: String,
        identity: Identity,
        read_at: SystemTime,
    ) -> Result<()> {
        if let Some(entries) = self.memo.as_mut().and_then(|memo| memo.known(&rel, &identity)) {
            let whole_files = self.whole_files;
            let children: Vec<Child> = entries
                .into_iter()
                .map(|entry| Child {
                    name: entry.name,
                    kind: if entry.is_dir { Kind::Dir } else { Kind::Other },
                    followed: None,
                    facts: entry.file.filter(|_| whole_files),
                })
                .collect();
            let (fd, via) = match (&via, children.iter().any(|child| child.kind == Kind::Dir)) {
                // Its directories are opened relative to it: open it.
                (Some(name), true) => match self.open_dir(&fd, name, &rel)? {
                    Some(own) => (Arc::new(own), None),
                    None => return Ok(()),
                },
                _ => (fd, via),
            };
            self.dirs_remembered += 1;
            self.push(fd, via, children, key, rel, Some(identity.dev_ino()));
            return Ok(());
        }
        let fd = match via {
            None => fd,
            Some(name) => match self.open_dir(&fd, &name, &rel)? {
                Some(own) => Arc::new(own),
                None => return Ok(()),
            },
        };
        let children = self.read_children(&fd, &rel)?;
        if let Some(memo) = self.memo.as_mut() {
            let entries: Option<Vec<MemoEntry>> = children
                .iter()
                .map(|child| match child.followed {
                    None => Some(MemoEntry {
                        name: child.name.clone(),
                        is_dir: child.kind == Kind::Dir,
                        file: child.facts,
                    }),
                    Some(_) => None,
                })
                .collect();
            memo.record(&rel, &identity, read_at, entries.as_deref());
        }
        self.push(fd, None, children, key, rel, Some(identity.dev_ino()));
        Ok(())
    }

    fn push(
        &mut self,
        fd: Arc<OwnedFd>,
        via: Option<String>,
        mut children: Vec<Child>,
        key: String,
        rel: String,
        identity: Option<((u32, u32), u64)>,
    ) {
        children.sort_unstable_by(|a, b| sort_key(a).cmp(sort_key(b)));
        let children = children.into_iter();
        self.stack.push(OpenDir { fd, via, children, key, rel, identity });
    }

    /// The entries of the open directory `fd`, in the order the directory gives them.
    fn read_children(&mut self, fd: &OwnedFd, rel: &str) -> Result<Vec<Child>> {
        self.dirs_read += 1;
        self.buffer.clear();
        let mut buffer = std::mem::take(&mut self.buffer);
        buffer.resize(DIRENT_BUFFER, MaybeUninit::uninit());
        let mut children = Vec::new();
        let mut entries = RawDir::new(fd.as_fd(), &mut buffer);
        let mut failure = None;
        while let Some(entry) = entries.next() {
            let entry = match entry {
                Ok(entry) => entry,
                Err(error) => {
                    failure = Some(self.io_error(rel, error));
                    break;
                }
            };
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let Ok(name) = std::str::from_utf8(name).map(str::to_string) else {
                let path = self.display(rel).join(String::from_utf8_lossy(name).as_ref());
                failure = Some(generic(format!("`{}` is not valid UTF-8", path.display())));
                break;
            };
            let kind = match entry.file_type() {
                FileType::Directory => Kind::Dir,
                FileType::Symlink | FileType::Unknown => {
                    // Followed now: a link to a directory sorts as one.
                    match rustix::fs::statx(fd, name.as_str(), AtFlags::empty(), STAT_FIELDS) {
                        Ok(stat) => {
                            let is_dir = file_type(&stat) == FileType::Directory;
                            let kind = if is_dir { Kind::Dir } else { Kind::Other };
                            let followed = Some(Box::new(stat));
                            children.push(Child { name, kind, followed, facts: None });
                            continue;
                        }
                        // A broken link is skipped, as object_store's walk does.
                        Err(Errno::NOENT) => continue,
                        Err(error) => {
                            failure = Some(self.io_error(&join(rel, &name), error));
                            break;
                        }
                    }
                }
                FileType::RegularFile if self.whole_files && self.memo.is_some() => {
                    // Its facts now, with its directory: the memo keeps them.
                    self.files_stated += 1;
                    match rustix::fs::statx(
                        fd,
                        name.as_str(),
                        AtFlags::SYMLINK_NOFOLLOW,
                        STAT_FIELDS,
                    ) {
                        Ok(stat) => {
                            let facts = (file_type(&stat) == FileType::RegularFile)
                                .then(|| FileFacts::of(&stat));
                            children.push(Child { name, kind: Kind::Other, followed: None, facts });
                            continue;
                        }
                        // Vanished since the directory was read: not listed.
                        Err(Errno::NOENT) => continue,
                        Err(error) => {
                            failure = Some(self.io_error(&join(rel, &name), error));
                            break;
                        }
                    }
                }
                _ => Kind::Other,
            };
            children.push(Child { name, kind, followed: None, facts: None });
        }
        self.buffer = buffer;
        match failure {
            Some(error) => Err(error),
            None => Ok(children),
        }
    }

    /// The next file of the walk, descending into directories as they come.
    fn step(&mut self) -> Option<Result<ObjectMeta>> {
        loop {
            if let Some((dir, key, memo)) = self.start.take() {
                if let Err(error) = self.open_root(dir, key, memo) {
                    return Some(Err(error));
                }
            }
            let Some(top) = self.stack.last_mut() else {
                if let Some(memo) = self.memo.take() {
                    memo.commit();
                }
                return None;
            };
            let Some(child) = top.children.next() else {
                self.stack.pop();
                continue;
            };
            if child.kind != Kind::Dir && is_upload_in_progress(&child.name) {
                continue;
            }
            match self.visit(child) {
                Ok(Some(meta)) => return Some(Ok(meta)),
                Ok(None) => continue,
                Err(error) => return Some(Err(error)),
            }
        }
    }

    /// Visits a child of the directory on top: a file's entry, or `None` after descending into a
    /// directory (or skipping what is not listed: a socket, a file vanished since).
    fn visit(&mut self, child: Child) -> Result<Option<ObjectMeta>> {
        let top = self.stack.last().ok_or_else(|| generic("the walk lost its place".into()))?;
        let fd = top.fd.clone();
        let path = match &top.via {
            Some(via) => format!("{via}/{}", child.name),
            None => child.name.clone(),
        };
        let key = join(&top.key, &child.name);
        let rel = join(&top.rel, &child.name);
        if let Some(stat) = child.followed {
            if child.kind == Kind::Dir {
                let identity = Identity::of(&stat);
                if self.loops_back(identity.dev_ino()) {
                    let shown = self.display(&rel);
                    return Err(generic(format!(
                        "`{}` is a symlink to a directory above it: the tree loops",
                        shown.display()
                    )));
                }
                // Not answered from the memo: a link's target changes without its directory.
                let identity = Some(identity.dev_ino());
                return self.enter_unstated(fd, path, key, rel, identity).map(|()| None);
            }
            return file_meta(key, &stat);
        }
        if let Some(facts) = child.facts {
            return object_meta_of(key, &facts).map(Some);
        }
        if child.kind == Kind::Dir && self.memo.is_none() {
            // Directories are `stat`ed only for the memo.
            return self.enter_unstated(fd, path, key, rel, None).map(|()| None);
        }
        let read_at = (self.clock)();
        let (flags, mask) = match child.kind {
            Kind::Dir => (AtFlags::empty(), DIR_FIELDS),
            Kind::Other => (AtFlags::SYMLINK_NOFOLLOW, STAT_FIELDS),
        };
        if child.kind != Kind::Dir {
            self.files_stated += 1;
        }
        let stat = match rustix::fs::statx(&*fd, path.as_str(), flags, mask) {
            Ok(stat) => stat,
            // Vanished since its directory was read: not listed, as object_store's walk does.
            Err(Errno::NOENT) => return Ok(None),
            Err(error) => return Err(self.io_error(&rel, error)),
        };
        if child.kind == Kind::Dir && file_type(&stat) == FileType::Directory {
            let identity = Identity::of(&stat);
            return self.enter(fd, Some(path), key, rel, identity, read_at).map(|()| None);
        }
        file_meta(key, &stat)
    }

    /// Descends without the memo: no `statx` of the directory.
    fn enter_unstated(
        &mut self,
        fd: Arc<OwnedFd>,
        path: String,
        key: String,
        rel: String,
        identity: Option<((u32, u32), u64)>,
    ) -> Result<()> {
        let Some(own) = self.open_dir(&fd, &path, &rel)? else { return Ok(()) };
        let children = self.read_children(&own, &rel)?;
        self.push(Arc::new(own), None, children, key, rel, identity);
        Ok(())
    }

    /// Opens the directory at `path` under `fd`; `None` when it is gone or no longer a
    /// directory (nothing to list, as object_store's walk does).
    fn open_dir(&self, fd: &OwnedFd, path: &str, rel: &str) -> Result<Option<OwnedFd>> {
        match rustix::fs::openat(fd, path, dir_flags(), Mode::empty()) {
            Ok(own) => Ok(Some(own)),
            Err(Errno::NOENT | Errno::NOTDIR) => Ok(None),
            Err(error) => Err(self.io_error(rel, error)),
        }
    }

    fn loops_back(&self, identity: ((u32, u32), u64)) -> bool {
        self.stack.iter().any(|open| open.identity == Some(identity))
    }

    fn display(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }

    fn io_error(&self, rel: &str, error: Errno) -> object_store::Error {
        let error = std::io::Error::from(error);
        generic(format!("cannot list `{}`: {error}", self.display(rel).display()))
    }
}

impl Iterator for Walker {
    type Item = Result<ObjectMeta>;

    fn next(&mut self) -> Option<Self::Item> {
        self.step()
    }
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        let mut joined = String::with_capacity(parent.len() + 1 + name.len());
        joined.push_str(parent);
        joined.push('/');
        joined.push_str(name);
        joined
    }
}

/// What a child sorts by: its name, with a `/` after a directory's. Keys under a directory all
/// start with `name/`, so visiting children in this order yields keys in byte order (`a-b`
/// before `a/x`, since `-` < `/`): readers merge the listing with sorted object lists. A link
/// or an entry of unknown type sorts as a file; if it turns out to be a directory its keys may
/// come out of order, and the reader says so.
fn sort_key(child: &Child) -> impl Iterator<Item = &u8> {
    let slash: &[u8] = if child.kind == Kind::Dir { b"/" } else { b"" };
    child.name.as_bytes().iter().chain(slash)
}

fn file_type(stat: &Statx) -> FileType {
    FileType::from_raw_mode(stat.stx_mode.into())
}

/// A regular file's entry; `None` for anything else (sockets, devices, FIFOs are not listed).
fn file_meta(key: String, stat: &Statx) -> Result<Option<ObjectMeta>> {
    if file_type(stat) != FileType::RegularFile {
        return Ok(None);
    }
    object_meta(key, stat).map(Some)
}
