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

/// Makes `dir` and everything under it owner-only (`0700` directories, `0600` files). The
/// engine's own threads may delete a file (an old journal or table) while the walk runs: a
/// file or directory gone between the listing and its change is skipped, not an error (an open
/// right after a crash failed so, with fjall cleaning up its recovery while this ran).
#[cfg(unix)]
pub(crate) fn restrict_tree(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let restricted = entry.file_type().and_then(|kind| {
            if kind.is_dir() {
                restrict_tree(&entry.path())
            } else if kind.is_file() {
                std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o600))
            } else {
                Ok(())
            }
        });
        gone_is_fine(restricted)?;
    }
    Ok(())
}

/// `Ok` for an entry that no longer exists: nothing is left to restrict.
fn gone_is_fine(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Makes `dir` and everything under it owner-only (nothing to do here).
#[cfg(not(unix))]
pub(crate) fn restrict_tree(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    /// A file or directory deleted between the walk's listing and its change is skipped (what
    /// `restrict_tree` does for each entry), while any other failure still counts.
    #[test]
    fn an_entry_gone_during_the_walk_is_skipped_and_other_errors_count() {
        let dir = tempfile::tempdir().expect("temp dir");
        let gone = dir.path().join("deleted-by-the-engine");
        assert!(gone_is_fine(restrict_tree(&gone)).is_ok());
        let file = |mode| std::fs::set_permissions(&gone, mode);
        use std::os::unix::fs::PermissionsExt;
        assert!(gone_is_fine(file(std::fs::Permissions::from_mode(0o600))).is_ok());
        let denied = io::Error::from(io::ErrorKind::PermissionDenied);
        assert!(gone_is_fine(Err(denied)).is_err());
        // The directory the walk starts from must exist.
        assert!(restrict_tree(&gone).is_err());
    }
}
