//! Free space on the filesystem of the server root: QuestDB holds back housekeeping during a
//! checkpoint, so its disk grows; the vendor advises 50 % headroom.

use std::path::Path;

/// QuestDB's recommended headroom.
pub const RECOMMENDED_FREE_PERCENT: f64 = 50.0;

/// Percent of the filesystem available to unprivileged writers at `path`.
///
/// # Errors
/// The `statvfs` error.
pub fn free_percent(path: &Path) -> std::io::Result<f64> {
    let stats = rustix::fs::statvfs(path)?;
    if stats.f_blocks == 0 {
        return Ok(100.0);
    }
    Ok(stats.f_bavail as f64 * 100.0 / stats.f_blocks as f64)
}

/// What to do with `free` percent free: `Err` (refuse) below `floor`, a warning below the
/// recommended headroom, nothing otherwise.
///
/// # Errors
/// The refusal, naming the numbers and the setting.
pub fn judge(free: f64, floor: f64, path: &Path) -> Result<Option<String>, String> {
    if free < floor {
        return Err(format!(
            "refusing to enter checkpoint mode: only {free:.1}% free on the filesystem of `{}`, below the floor of \
             {floor:.1}% (questdb.min_free_disk_percent); during a checkpoint QuestDB holds back housekeeping and its \
             disk fills",
            path.display()
        ));
    }
    if free < RECOMMENDED_FREE_PERCENT {
        return Ok(Some(format!(
            "only {free:.1}% free on the filesystem of `{}`: QuestDB advises {RECOMMENDED_FREE_PERCENT:.0}% headroom during a checkpoint",
            path.display()
        )));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_free_space_thresholds() {
        let path = Path::new("/var/lib/questdb");
        assert_eq!(judge(80.0, 10.0, path), Ok(None));
        assert!(judge(30.0, 10.0, path).unwrap().unwrap().contains("advises 50% headroom"));
        assert!(judge(5.0, 10.0, path).unwrap_err().contains("questdb.min_free_disk_percent"));
        assert!((0.0..=100.0).contains(&free_percent(Path::new("/")).unwrap()));
    }
}
