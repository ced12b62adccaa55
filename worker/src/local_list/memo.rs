//! The listing memo: what each directory of a listed tree held the last time it was read, so
//! that an unchanged directory is not read again.
//!
//! Why: an incremental backup of a node with a million parquet files lists a million
//! directories (InfluxDB 3 writes each 10-minute chunk into a directory of its own), and
//! reading a directory costs an `openat`, two `getdents64` (ext4 hashes every entry of even a
//! one-entry directory) and a `close`: `perf` over the bench's incremental put half of the
//! workers' CPU in the kernel, most of it there. A directory's modification and change times
//! move whenever an entry is created, removed or renamed in it (POSIX), and the change time
//! cannot be set back; so a directory whose device, inode and both times are those recorded
//! holds the names recorded, and one `statx` replaces the four calls. The files themselves are
//! still `stat`ed one by one (a file changed in place does not touch its directory), except in
//! a store written in whole files only (InfluxDB 3's: every write a new file renamed or linked
//! into place, which changes the directory), where the facts of a file taken when its
//! directory was read are kept in the record and stand while the directory is unchanged.
//!
//! What keeps it right:
//! - a directory is recorded only when both its times were at least [`SETTLED`] old when it was
//!   read: a change later than that reading then carries a later time, even with the coarse
//!   clock file systems stamp with (git's "racy" rule for its untracked cache);
//! - only on file systems known to keep those times ([`trusted_file_system`]): not on network
//!   or FUSE mounts, where a cached attribute may be stale;
//! - not for directories holding symlinks (their targets change without the directory) or
//!   entries whose type the directory does not tell, nor on another device than the root;
//! - every record carries a checksum (CRC-64); the first that does not match ends the memo's use for
//!   the walk (the directories are then read), and a walk that does not reach its end leaves
//!   the previous memo in place.
//!
//! Records come in the walk's order (a directory before what is under it, siblings sorted as
//! keys sort), so a walk reads the previous memo alongside, one record at a time: its memory
//! does not grow with the tree.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rustix::fs::Statx;

/// How old a directory's times must be when it is read for its record to be trusted.
pub(super) const SETTLED: Duration = Duration::from_secs(2);

/// Start of every memo file: its format.
const HEADER: &[u8] = b"bk listing memo 2\n";

/// Bytes of a record's checksum (CRC-64/NVME: it guards against damage, not forgery; the memo
/// lives in the worker's own cache).
const CHECKSUM_BYTES: usize = 8;

/// A record larger than this is damage, not a directory.
const MAX_RECORD_BYTES: usize = 64 << 20;

/// File system magic numbers (`statfs`'s `f_type`) whose directories keep POSIX times: ext2/3/4,
/// XFS, btrfs, tmpfs, ZFS, F2FS.
const TRUSTED_FILE_SYSTEMS: [u64; 6] =
    [0xEF53, 0x5846_5342, 0x9123_683E, 0x0102_1994, 0x2FC1_2FC1, 0xF2F5_2010];

/// What identifies a directory's state: where it is and when it last changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Identity {
    dev: (u32, u32),
    ino: u64,
    mtime: (i64, u32),
    ctime: (i64, u32),
}

impl Identity {
    /// The identity `statx` reported.
    pub(super) fn of(stat: &Statx) -> Self {
        Self {
            dev: (stat.stx_dev_major, stat.stx_dev_minor),
            ino: stat.stx_ino,
            mtime: (stat.stx_mtime.tv_sec, stat.stx_mtime.tv_nsec),
            ctime: (stat.stx_ctime.tv_sec, stat.stx_ctime.tv_nsec),
        }
    }

    /// Device and inode, as `stat`'s `st_dev` and `st_ino` tell a directory apart.
    pub(super) fn dev_ino(&self) -> ((u32, u32), u64) {
        (self.dev, self.ino)
    }

    /// Whether both times were at least [`SETTLED`] before `read_at`.
    fn settled(&self, read_at: SystemTime) -> bool {
        let Ok(since_epoch) = read_at.duration_since(SystemTime::UNIX_EPOCH) else { return false };
        let limit = since_epoch.saturating_sub(SETTLED);
        let before = |(sec, nsec): (i64, u32)| {
            u64::try_from(sec).is_ok_and(|sec| Duration::new(sec, nsec.min(999_999_999)) <= limit)
        };
        before(self.mtime) && before(self.ctime)
    }
}

/// A directory entry as the memo keeps it: its name, whether it is a directory, and what a
/// file's `stat` said when it was read with its directory (see [`FileFacts`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct MemoEntry {
    /// Its name (UTF-8: the walk refuses others).
    pub(super) name: String,
    /// A directory (else a file, `stat`ed when visited unless its facts are trusted).
    pub(super) is_dir: bool,
    /// A regular file's facts, when they were taken with its directory.
    pub(super) file: Option<FileFacts>,
}

/// What a regular file's listing entry is made of: inode, size, modification time. Trusted
/// from the memo only for a store written in whole files (a write is a new file renamed or
/// linked into place, which changes its directory), never for one rewritten in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FileFacts {
    pub(super) ino: u64,
    pub(super) size: u64,
    pub(super) mtime: (i64, u32),
}

impl FileFacts {
    /// The facts `statx` reported.
    pub(super) fn of(stat: &Statx) -> Self {
        Self {
            ino: stat.stx_ino,
            size: stat.stx_size,
            mtime: (stat.stx_mtime.tv_sec, stat.stx_mtime.tv_nsec),
        }
    }
}

/// An entry's kind byte in a record.
const FILE: u8 = 0;
const DIR: u8 = 1;
const FILE_WITH_FACTS: u8 = 2;

/// Whether the file system holding `fd` keeps directory times the memo can trust.
pub(super) fn trusted_file_system(fd: impl AsFd) -> bool {
    rustix::fs::fstatfs(fd).is_ok_and(|stat| TRUSTED_FILE_SYSTEMS.contains(&(stat.f_type as u64)))
}

/// A walk's use of the memo: the previous one read alongside, the next one written.
pub(super) struct MemoSession {
    previous: Option<Previous>,
    next: Option<BufWriter<File>>,
    target: PathBuf,
    scratch: PathBuf,
    root_dev: (u32, u32),
}

impl MemoSession {
    /// Starts a walk whose memo is `target`, for a root on device `root_dev`.
    pub(super) fn start(target: PathBuf, root_dev: (u32, u32)) -> Self {
        let previous = File::open(&target).ok().and_then(|file| Previous::open(file).ok());
        let scratch = scratch_path(&target);
        remove_orphaned_scratch(&target);
        let next = target
            .parent()
            .and_then(|parent| std::fs::create_dir_all(parent).ok())
            .and_then(|()| File::create(&scratch).ok())
            .map(|file| BufWriter::with_capacity(256 << 10, file))
            .and_then(|mut writer| writer.write_all(HEADER).ok().map(|()| writer));
        Self { previous, next, target, scratch, root_dev }
    }

    /// The entries of the directory at `rel` (relative to the root; empty for the root) if the
    /// previous memo recorded it with `identity`; they are recorded again for the next walk.
    pub(super) fn known(&mut self, rel: &str, identity: &Identity) -> Option<Vec<MemoEntry>> {
        if identity.dev != self.root_dev {
            return None;
        }
        let found = self.previous.as_mut()?.find(rel)?;
        if found.identity != *identity {
            return None;
        }
        self.write(rel, identity, &found.entries);
        Some(found.entries)
    }

    /// Records the directory at `rel`, read at `read_at` with `identity`, holding `entries`
    /// (`None`: an entry the memo cannot stand for, such as a symlink; nothing is recorded).
    pub(super) fn record(
        &mut self,
        rel: &str,
        identity: &Identity,
        read_at: SystemTime,
        entries: Option<&[MemoEntry]>,
    ) {
        if let Some(entries) = entries {
            if identity.dev == self.root_dev && identity.settled(read_at) {
                self.write(rel, identity, entries);
            }
        }
    }

    fn write(&mut self, rel: &str, identity: &Identity, entries: &[MemoEntry]) {
        let Some(writer) = self.next.as_mut() else { return };
        let payload = encode(rel, identity, entries);
        let written = writer
            .write_all(&(payload.len() as u32).to_le_bytes())
            .and_then(|()| writer.write_all(&payload))
            .and_then(|()| writer.write_all(&checksum(&payload)));
        if written.is_err() {
            self.next = None;
        }
    }

    /// The walk reached its end: the memo written replaces the previous one.
    pub(super) fn commit(mut self) {
        if let Some(writer) = self.next.take() {
            // No fsync: a memo torn by a crash fails its checksums and is not believed.
            if writer.into_inner().is_ok() && std::fs::rename(&self.scratch, &self.target).is_ok() {
                return;
            }
        }
        let _ = std::fs::remove_file(&self.scratch);
    }
}

impl Drop for MemoSession {
    /// A walk that did not reach its end keeps the previous memo.
    fn drop(&mut self) {
        if self.next.take().is_some() {
            let _ = std::fs::remove_file(&self.scratch);
        }
    }
}

/// A unique scratch name beside `target` (two walks of one tree may run at once).
fn scratch_path(target: &Path) -> PathBuf {
    let mut name = target.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.{}.tmp", std::process::id(), ulid::Ulid::new()));
    target.with_file_name(name)
}

/// Removes the scratch files of `target` that walks of workers no longer running left behind
/// (killed mid-walk: their `Drop` never ran). A scratch file names its process; one whose process
/// is gone is an orphan. Best effort: a file that cannot be removed stays.
fn remove_orphaned_scratch(target: &Path) {
    let (Some(dir), Some(name)) =
        (target.parent(), target.file_name().and_then(|name| name.to_str()))
    else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(pid) = file_name
            .to_str()
            .and_then(|file| file.strip_prefix(name))
            .and_then(|rest| rest.strip_prefix('.'))
            .and_then(|rest| rest.strip_suffix(".tmp"))
            .and_then(|rest| rest.split_once('.'))
            .and_then(|(pid, _ulid)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// One record of the previous memo.
struct Record {
    rel: String,
    identity: Identity,
    entries: Vec<MemoEntry>,
}

/// The previous memo, read one record at a time; a damaged record ends it (the records before
/// it are still good: each has its own checksum).
struct Previous {
    reader: BufReader<File>,
    head: Option<Record>,
}

impl Previous {
    fn open(file: File) -> Result<Self, ()> {
        let mut reader = BufReader::with_capacity(256 << 10, file);
        let mut header = [0u8; HEADER.len()];
        reader.read_exact(&mut header).map_err(drop)?;
        if header != HEADER {
            return Err(());
        }
        let mut previous = Self { reader, head: None };
        previous.advance();
        Ok(previous)
    }

    /// The record of `rel`, skipping those before it in walk order.
    fn find(&mut self, rel: &str) -> Option<Record> {
        loop {
            let head = self.head.as_ref()?;
            match walk_order(&head.rel).cmp(walk_order(rel)) {
                std::cmp::Ordering::Less => self.advance(),
                std::cmp::Ordering::Greater => return None,
                std::cmp::Ordering::Equal => {
                    let found = self.head.take();
                    self.advance();
                    return found;
                }
            }
        }
    }

    /// Reads the next record into `head`; at the end or at damage, `head` stays empty.
    fn advance(&mut self) {
        self.head = self.read_record().ok().flatten();
    }

    fn read_record(&mut self) -> Result<Option<Record>, ()> {
        let mut length = [0u8; 4];
        match self.reader.read_exact(&mut length) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(_) => return Err(()),
        }
        let length = u32::from_le_bytes(length) as usize;
        if length > MAX_RECORD_BYTES {
            return Err(());
        }
        let mut payload = vec![0u8; length + CHECKSUM_BYTES];
        self.reader.read_exact(&mut payload).map_err(drop)?;
        let (payload, checksum) = payload.split_at(length);
        if self::checksum(payload) != *checksum {
            return Err(());
        }
        decode(payload).map(Some)
    }
}

fn checksum(payload: &[u8]) -> [u8; CHECKSUM_BYTES] {
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Nvme, payload).to_le_bytes()
}

/// The order a walk visits directories in: by key with a `/` after each (a directory's key
/// sorts as its contents' keys do), the root (empty) first.
fn walk_order(rel: &str) -> impl Iterator<Item = &u8> + Clone {
    let slash: &[u8] = if rel.is_empty() { b"" } else { b"/" };
    rel.as_bytes().iter().chain(slash)
}

fn encode(rel: &str, identity: &Identity, entries: &[MemoEntry]) -> Vec<u8> {
    let names: usize = entries.iter().map(|entry| entry.name.len() + 3).sum();
    let mut out = Vec::with_capacity(4 + rel.len() + 44 + names);
    out.extend_from_slice(&(rel.len() as u32).to_le_bytes());
    out.extend_from_slice(rel.as_bytes());
    out.extend_from_slice(&identity.dev.0.to_le_bytes());
    out.extend_from_slice(&identity.dev.1.to_le_bytes());
    out.extend_from_slice(&identity.ino.to_le_bytes());
    out.extend_from_slice(&identity.mtime.0.to_le_bytes());
    out.extend_from_slice(&identity.mtime.1.to_le_bytes());
    out.extend_from_slice(&identity.ctime.0.to_le_bytes());
    out.extend_from_slice(&identity.ctime.1.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for entry in entries {
        out.push(match (entry.is_dir, entry.file) {
            (true, _) => DIR,
            (false, None) => FILE,
            (false, Some(_)) => FILE_WITH_FACTS,
        });
        out.extend_from_slice(&(entry.name.len() as u16).to_le_bytes());
        out.extend_from_slice(entry.name.as_bytes());
        if let (false, Some(facts)) = (entry.is_dir, entry.file) {
            out.extend_from_slice(&facts.ino.to_le_bytes());
            out.extend_from_slice(&facts.size.to_le_bytes());
            out.extend_from_slice(&facts.mtime.0.to_le_bytes());
            out.extend_from_slice(&facts.mtime.1.to_le_bytes());
        }
    }
    out
}

fn decode(payload: &[u8]) -> Result<Record, ()> {
    let mut input = Input(payload);
    let rel_len = input.u32()? as usize;
    let rel = input.string(rel_len)?;
    let dev = (input.u32()?, input.u32()?);
    let ino = input.u64()?;
    let mtime = (input.u64()? as i64, input.u32()?);
    let ctime = (input.u64()? as i64, input.u32()?);
    let count = input.u32()? as usize;
    let mut entries = Vec::with_capacity(count.min(payload.len() / 3));
    for _ in 0..count {
        let kind = input.take(1)?[0];
        let name_len = u16::from_le_bytes(input.array()?) as usize;
        let name = input.string(name_len)?;
        let file = match kind {
            FILE | DIR => None,
            FILE_WITH_FACTS => Some(FileFacts {
                ino: input.u64()?,
                size: input.u64()?,
                mtime: (input.u64()? as i64, input.u32()?),
            }),
            _ => return Err(()),
        };
        entries.push(MemoEntry { name, is_dir: kind == DIR, file });
    }
    if !input.0.is_empty() {
        return Err(());
    }
    Ok(Record { rel, identity: Identity { dev, ino, mtime, ctime }, entries })
}

/// A payload being decoded.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn take(&mut self, count: usize) -> Result<&'a [u8], ()> {
        if self.0.len() < count {
            return Err(());
        }
        let (taken, rest) = self.0.split_at(count);
        self.0 = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ()> {
        self.take(N)?.try_into().map_err(drop)
    }

    fn u32(&mut self) -> Result<u32, ()> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, ()> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn string(&mut self, count: usize) -> Result<String, ()> {
        String::from_utf8(self.take(count)?.to_vec()).map_err(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(ino: u64, ctime: i64) -> Identity {
        Identity { dev: (8, 1), ino, mtime: (ctime, 5), ctime: (ctime, 7) }
    }

    fn entries(names: &[(&str, bool)]) -> Vec<MemoEntry> {
        names
            .iter()
            .map(|(name, is_dir)| MemoEntry {
                name: name.to_string(),
                is_dir: *is_dir,
                file: (!is_dir && *name != "x").then_some(FileFacts {
                    ino: 7,
                    size: name.len() as u64,
                    mtime: (-3, 999_999_999),
                }),
            })
            .collect()
    }

    fn long_ago() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(10_000)
    }

    #[test]
    fn test_a_memo_gives_back_unchanged_directories_and_only_those() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("memo");
        let mut first = MemoSession::start(target.clone(), (8, 1));
        first.record(
            "",
            &identity(1, 100),
            long_ago(),
            Some(&entries(&[("a", true), ("a-b", false)])),
        );
        first.record("a", &identity(2, 100), long_ago(), Some(&entries(&[("x", false)])));
        first.record("a/y", &identity(3, 100), long_ago(), Some(&entries(&[("z", false)])));
        first.commit();

        let mut second = MemoSession::start(target.clone(), (8, 1));
        assert_eq!(
            second.known("", &identity(1, 100)),
            Some(entries(&[("a", true), ("a-b", false)]))
        );
        // Changed since (a later change time): read again.
        assert_eq!(second.known("a", &identity(2, 101)), None);
        second.record(
            "a",
            &identity(2, 101),
            long_ago(),
            Some(&entries(&[("x", false), ("w", false)])),
        );
        assert_eq!(second.known("a/y", &identity(3, 100)), Some(entries(&[("z", false)])));
        second.commit();

        let mut third = MemoSession::start(target, (8, 1));
        assert_eq!(third.known("", &identity(1, 100)).map(|found| found.len()), Some(2));
        assert_eq!(third.known("a", &identity(2, 101)).map(|found| found.len()), Some(2));
        // Another device (a mount inside the tree) is never answered from the memo.
        assert_eq!(third.known("a/y", &Identity { dev: (9, 1), ..identity(3, 100) }), None);
    }

    #[test]
    fn test_a_directory_changed_moments_before_it_was_read_is_not_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("memo");
        let now = SystemTime::now();
        let seconds = now.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64;
        let mut first = MemoSession::start(target.clone(), (8, 1));
        first.record("", &identity(1, seconds), now, Some(&entries(&[("f", false)])));
        first.record("old", &identity(2, seconds - 60), now, Some(&entries(&[("f", false)])));
        first.record("symlinks", &identity(3, seconds - 60), now, None);
        first.commit();
        let mut second = MemoSession::start(target, (8, 1));
        assert_eq!(second.known("", &identity(1, seconds)), None);
        assert!(second.known("old", &identity(2, seconds - 60)).is_some());
        assert_eq!(second.known("symlinks", &identity(3, seconds - 60)), None);
    }

    #[test]
    fn test_a_damaged_memo_is_not_believed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("memo");
        let mut first = MemoSession::start(target.clone(), (8, 1));
        first.record("", &identity(1, 100), long_ago(), Some(&entries(&[("a", false)])));
        first.record("b", &identity(2, 100), long_ago(), Some(&entries(&[("c", false)])));
        first.commit();
        let mut bytes = std::fs::read(&target).unwrap();
        let flipped = bytes.len() - CHECKSUM_BYTES - 1;
        bytes[flipped] ^= b'c' ^ b'd';
        std::fs::write(&target, bytes).unwrap();
        let mut second = MemoSession::start(target, (8, 1));
        assert!(second.known("", &identity(1, 100)).is_some());
        assert_eq!(second.known("b", &identity(2, 100)), None);
    }

    #[test]
    fn test_a_walk_that_does_not_end_keeps_the_previous_memo() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("memo");
        let mut first = MemoSession::start(target.clone(), (8, 1));
        first.record("", &identity(1, 100), long_ago(), Some(&entries(&[("a", false)])));
        first.commit();
        let mut interrupted = MemoSession::start(target.clone(), (8, 1));
        assert!(interrupted.known("", &identity(1, 100)).is_some());
        drop(interrupted);
        let mut third = MemoSession::start(target, (8, 1));
        assert!(third.known("", &identity(1, 100)).is_some());
        drop(third);
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "scratch files left behind");
    }

    #[test]
    fn test_scratch_files_of_workers_no_longer_running_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("memo");
        // A worker killed mid-walk (no such process: pids stop well below u32::MAX), one of
        // this process still walking, and another memo's.
        let orphan = dir.path().join("memo.4294967295.01M93N5WFGAPGCFASXRN0ES2GQ.tmp");
        let ours = scratch_path(&target);
        let other = dir.path().join("other.4294967295.01M93N5WFGAPGCFASXRN0ES2GQ.tmp");
        for file in [&orphan, &ours, &other] {
            std::fs::write(file, b"partial").unwrap();
        }
        let session = MemoSession::start(target, (8, 1));
        assert!(!orphan.exists(), "an orphaned scratch file is removed");
        assert!(ours.exists() && other.exists(), "live walks' and other memos' files are kept");
        drop(session);
    }
}
