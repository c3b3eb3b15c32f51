//! The data directory is private to the user running the server: sessions are credentials.
//!
//! The process umask is set to `077` first, so every file the DiskStore's engine creates later
//! (journals, segments, and dump files written from this process) is `0600` and every
//! directory `0700`, without the store having to know. A directory that already exists (made by
//! an older version, or by hand) is tightened to the same modes.

use std::{fs, io, path::Path};

/// Makes `dir` (created if missing) and everything in it readable by its owner only.
pub fn make_private(dir: &Path) -> Result<(), String> {
    restrict_umask();
    fs::create_dir_all(dir)
        .and_then(|()| tighten(dir))
        .map_err(|e| format!("cannot make {} private (0700): {e}", dir.display()))
}

#[cfg(unix)]
fn restrict_umask() {
    use rustix::fs::Mode;
    rustix::process::umask(Mode::from_raw_mode(0o077));
}

#[cfg(not(unix))]
fn restrict_umask() {}

/// `0700` for `path` if it is a directory (then recursively), `0600` for a file.
#[cfg(unix)]
fn tighten(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mode = if meta.is_dir() { 0o700 } else { 0o600 };
    if meta.permissions().mode() & 0o777 != mode {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    }
    if meta.is_dir() {
        let listed = fs::read_dir(path)?
            .map(|entry| entry.map(|e| e.path()))
            .collect::<io::Result<Vec<_>>>()?;
        tighten_listed(&listed)?;
    }
    Ok(())
}

/// [`tighten`] each of `paths`, listed a moment ago: one gone since (a store's engine closing
/// in the background deletes the files it replaced) has nothing left to tighten.
#[cfg(unix)]
fn tighten_listed(paths: &[std::path::PathBuf]) -> io::Result<()> {
    for path in paths {
        match tighten(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => other?,
        }
    }
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// A file listed and then deleted before it is tightened (the engine of a store closing in
    /// the background) is not an error; the others are still tightened. It was: a restart
    /// right after another process's store was dropped failed with "cannot make DIR private".
    #[test]
    fn a_file_gone_since_the_listing_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let kept = dir.path().join("kept");
        fs::write(&kept, b"x").unwrap();
        fs::set_permissions(&kept, fs::Permissions::from_mode(0o644)).unwrap();
        let gone = dir.path().join("gone");
        tighten_listed(&[gone, kept.clone()]).unwrap();
        let mode = fs::metadata(&kept).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}

#[cfg(not(unix))]
fn tighten(_path: &Path) -> io::Result<()> {
    Ok(())
}
