//! How much room is left on a file system: the one question about the disk
//! that `std` cannot answer.
//!
//! The avatar store asks it before every new picture, so that uploads stop
//! while there is still room for everything else on the disk (see
//! [`crate::config::DEFAULT_AVATAR_MIN_FREE_MB`]). The answer comes from
//! `statvfs(3)`, the only `unsafe` call of this module, wrapped in
//! [`available_bytes`].

use std::ffi::CString;
use std::io;
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Bytes that an unprivileged process may still write on the file system
/// holding `path` (`f_bavail` blocks of `f_frsize` bytes: the blocks reserved
/// for root are not counted, since the server does not run as root, or should
/// not).
///
/// # Errors
///
/// The OS error of `statvfs` (`NotFound` if `path` does not exist), or
/// `InvalidInput` if the path holds a NUL byte.
pub fn available_bytes(path: &Path) -> io::Result<u64> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "the path holds a NUL byte"))?;
    let mut stat = MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c_path` is a NUL-terminated string that outlives the call, and
    // `stat` is writable memory of the type statvfs(3) fills.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled the whole structure.
    let stat = unsafe { stat.assume_init() };
    // Both are u64 on 64-bit Linux but narrower on some 32-bit targets.
    #[allow(clippy::useless_conversion)]
    let (blocks, block_len) = (u64::from(stat.f_bavail), u64::from(stat.f_frsize));
    Ok(blocks.saturating_mul(block_len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_temp_dir_has_some_room_and_a_missing_path_is_not_found() {
        assert!(available_bytes(&std::env::temp_dir()).unwrap() > 0);
        let missing = std::env::temp_dir().join("free-space-test-no-such-dir").join("x");
        assert_eq!(available_bytes(&missing).unwrap_err().kind(), io::ErrorKind::NotFound);
        assert_eq!(available_bytes(Path::new("a\0b")).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }
}
