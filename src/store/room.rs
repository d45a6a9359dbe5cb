//! Room on the disk that holds a data folder. sled does not survive running out of space: a
//! write that fails for want of it can leave its log unreadable ("Read corrupted data", every
//! command failing after, `repair` too), and the flush that closes it can wait for good. A
//! helper's probe lost a library by re-running `index` on a full disk, and a first `index` on
//! one hung. So the catalog is opened and written only while the disk keeps [`reserve`] bytes
//! free beyond what the write needs: a write that would come closer to full is refused, and the
//! library stays as it was.

use std::path::Path;

use crate::error::{Error, Result};

/// Kept free by default: far more than a batch of catalog changes, the catalog's log segments
/// and snapshot need, with room for the text index's commits between two checks.
const DEFAULT_RESERVE_MIB: u64 = 64;
/// Another amount to keep free, in MiB.
pub const RESERVE_VARIABLE: &str = "IMGSEARCH_MIN_FREE_MB";

/// The bytes to keep free on a data folder's disk ([`RESERVE_VARIABLE`], else 64 MiB).
pub fn reserve() -> u64 {
    let mib = std::env::var(RESERVE_VARIABLE).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(DEFAULT_RESERVE_MIB);
    mib << 20
}

/// Refuses a write of `bytes` (beyond what the reserve covers) into `dir` (or, before it exists,
/// its nearest folder that does) unless the disk keeps [`reserve`] free after it. Where the free space cannot be read (a
/// system or file system that does not say), nothing is refused.
pub fn check(dir: &Path, bytes: u64) -> Result<()> {
    let needed = reserve().saturating_add(bytes);
    match dir.ancestors().find(|folder| folder.exists()).and_then(free_bytes) {
        Some(free) if free < needed => {
            Err(Error::DiskFull { path: dir.to_owned(), free_mib: free >> 20, needed_mib: needed.div_ceil(1 << 20) })
        }
        _ => Ok(()),
    }
}

/// The bytes an unprivileged user may still write on the file system holding `path`.
#[cfg(unix)]
fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a NUL-terminated string and `stat` a buffer of the type statvfs fills.
    if unsafe { libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled `stat`.
    let stat = unsafe { stat.assume_init() };
    #[allow(clippy::unnecessary_cast)] // the field types differ between systems
    Some((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
}

#[cfg(not(unix))]
fn free_bytes(_: &Path) -> Option<u64> {
    None
}
