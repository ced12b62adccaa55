//! Real filesystems on loop devices for snapshot tests: btrfs, XFS with reflinks, and an XFS on
//! an LVM thin volume. Needs root and Debian's `btrfs-progs`, `xfsprogs`, `lvm2` and
//! `thin-provisioning-tools` (`.ci/run` installs them). Everything is undone on drop — mounts,
//! snapshot volumes, the volume group, the loop device, the image — also when a test fails.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Which filesystem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// btrfs.
    Btrfs,
    /// XFS with reflinks.
    Xfs,
    /// XFS on a thin logical volume of a volume group on the loop device.
    LvmThinXfs,
}

/// A mounted filesystem on a loop device.
pub struct LoopFilesystem {
    /// Where it is mounted.
    pub mount: PathBuf,
    image: PathBuf,
    device: String,
    volume_group: Option<String>,
}

/// Why loop filesystems cannot be made here, if they cannot: not root.
pub fn unavailable() -> Option<String> {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| line.strip_prefix("Uid:").map(str::to_string))
        })
        .and_then(|ids| ids.split_whitespace().next().map(str::to_string));
    if uid.as_deref() != Some("0") {
        return Some("not root: loop devices and mounts need root (CI runs as root)".to_string());
    }
    None
}

fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|error| format!("cannot run `{program}` ({error}): install it (.ci/run does)"))?;
    if !output.status.success() {
        return Err(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

impl LoopFilesystem {
    /// Makes a `size_mib` MiB image under `dir`, a filesystem of `kind` on it, mounted at
    /// `dir/<name>`.
    ///
    /// # Errors
    /// Any step failing, with the tool's message.
    pub fn create(dir: &Path, name: &str, kind: Kind, size_mib: u64) -> Result<Self, String> {
        let image = dir.join(format!("{name}.img"));
        let file = std::fs::File::create(&image).map_err(|error| error.to_string())?;
        file.set_len(size_mib << 20).map_err(|error| error.to_string())?;
        let image_arg = image.to_str().ok_or("image path is not UTF-8")?;
        let device = run("losetup", &["--find", "--show", image_arg])?;
        let mount = dir.join(name);
        let mut made =
            Self { mount: mount.clone(), image, device: device.clone(), volume_group: None };
        std::fs::create_dir_all(&mount).map_err(|error| error.to_string())?;
        let filesystem_device = match kind {
            Kind::Btrfs | Kind::Xfs => device.clone(),
            Kind::LvmThinXfs => {
                // Unique per image: tests run in parallel.
                let group = format!("bk{}", std::process::id())
                    + &name.chars().filter(char::is_ascii_alphanumeric).collect::<String>();
                run("pvcreate", &["-ff", "-y", &device])?;
                run("vgcreate", &[&group, &device])?;
                made.volume_group = Some(group.clone());
                run("lvcreate", &["--type", "thin-pool", "-l", "90%FREE", "-n", "pool", &group])?;
                let virtual_size = format!("{}M", size_mib);
                run(
                    "lvcreate",
                    &["--thin", "-V", &virtual_size, "-n", "data", &format!("{group}/pool")],
                )?;
                format!("/dev/{group}/data")
            }
        };
        match kind {
            Kind::Btrfs => run("mkfs.btrfs", &["-q", "-f", &filesystem_device])?,
            Kind::Xfs | Kind::LvmThinXfs => {
                run("mkfs.xfs", &["-q", "-f", "-m", "reflink=1", &filesystem_device])?
            }
        };
        let mount_arg = mount.to_str().ok_or("mount path is not UTF-8")?;
        run("mount", &[&filesystem_device, mount_arg])?;
        Ok(made)
    }

    /// Mounts it again with `options` added (e.g. `flushoncommit`).
    ///
    /// # Errors
    /// `mount` failed.
    pub fn remount(&self, options: &str) -> Result<(), String> {
        let mount = self.mount.to_str().ok_or("not UTF-8")?;
        run("mount", &["-o", &format!("remount,{options}"), mount]).map(drop)
    }

    /// Makes `path` (under the mount) a btrfs subvolume.
    ///
    /// # Errors
    /// `btrfs` failed.
    pub fn subvolume(&self, relative: &str) -> Result<PathBuf, String> {
        let path = self.mount.join(relative);
        run("btrfs", &["subvolume", "create", path.to_str().ok_or("not UTF-8")?])?;
        Ok(path)
    }
}

impl Drop for LoopFilesystem {
    fn drop(&mut self) {
        // Whatever a test left mounted below (a snapshot's mount point) first.
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let mut below: Vec<&str> = mounts
            .lines()
            .filter_map(|line| line.split_whitespace().nth(1))
            .filter(|point| Path::new(point).starts_with(&self.mount))
            .collect();
        below.sort_by_key(|point| std::cmp::Reverse(point.len()));
        for point in below {
            let _ = run("umount", &["-l", point]);
        }
        if let Some(group) = &self.volume_group {
            let _ = run("vgremove", &["-f", "-y", group]);
            let _ = run("pvremove", &["-ff", "-y", &self.device]);
        }
        let _ = run("losetup", &["-d", &self.device]);
        let _ = std::fs::remove_file(&self.image);
    }
}
