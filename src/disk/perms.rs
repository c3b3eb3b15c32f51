//! Owner-only permissions for the data directory: sessions live there, so nobody but the
//! process's user may list or read it.
//!
//! The directories strata creates are `0700` from the start and its own files `0600`. The
//! engine creates its files with the process umask, so they are restricted to `0600` when the
//! directory is opened and again when it is closed; in between they sit inside `0700`
//! directories, which other users cannot enter. On other platforms this does nothing.

use std::{io, path::Path};

/// Creates `dir` (not its parents) owner-only; `Ok` if it already is a directory.
pub(crate) fn create_dir(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    match builder.create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(io::Error::new(
            io::ErrorKind::NotADirectory,
            "the path exists and is not a directory",
        )),
        Err(e) => Err(e),
    }
}

/// Makes `dir` and everything under it owner-only (`0700` directories, `0600` files).
#[cfg(unix)]
pub(crate) fn restrict_tree(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            restrict_tree(&entry.path())?;
        } else if kind.is_file() {
            std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

/// Makes `dir` and everything under it owner-only (nothing to do here).
#[cfg(not(unix))]
pub(crate) fn restrict_tree(_dir: &Path) -> io::Result<()> {
    Ok(())
}
