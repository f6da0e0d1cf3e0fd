//! Files the collector and its administrative commands write, written so that
//! nobody who can write the directory can turn the write against another file.
//!
//! `revoke-cert`, `enroll`, `restore` and friends run as root inside the
//! directory the service user owns. A write to a predictable temporary name
//! (`revoked.toml.tmp`) would follow a symlink planted there and let the
//! service user make root overwrite any file. Here every file is first
//! created under a random name with `O_CREAT|O_EXCL` (never follows a
//! symlink, never opens an existing file), written, synced, and then renamed
//! over the destination (a rename replaces a symlink, it does not follow it).

use std::fs::{File, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

/// Mode of a private file (keys, backups): owner only.
pub const PRIVATE: u32 = 0o600;
/// Mode of a public file (certificates, configs, lists).
pub const PUBLIC: u32 = 0o644;

/// A file that could not be written.
#[derive(Debug, thiserror::Error)]
#[error("{}: cannot write: {error}", path.display())]
pub struct WriteError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub error: std::io::Error,
}

fn err(path: &Path) -> impl Fn(std::io::Error) -> WriteError + '_ {
    move |error| WriteError {
        path: path.to_path_buf(),
        error,
    }
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A new file beside `path` under a random name, created exclusively with
/// `mode`; write it, then [`persist`] it to `path`. Dropped unpersisted, it
/// is removed.
pub fn create_beside(path: &Path, mode: u32) -> Result<NamedTempFile, WriteError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(Permissions::from_mode(mode))
        .tempfile_in(parent(path))
        .map_err(err(path))
}

/// Syncs `tmp` and renames it to `path` (replacing a file or a symlink there,
/// never writing through it), then syncs the directory.
pub fn persist(tmp: NamedTempFile, path: &Path) -> Result<(), WriteError> {
    tmp.as_file().sync_all().map_err(err(path))?;
    tmp.persist(path).map_err(|e| err(path)(e.error))?;
    // The rename is durable once the directory is.
    File::open(parent(path))
        .and_then(|d| d.sync_all())
        .map_err(err(path))
}

/// Writes `data` to `path` with `mode`: a new file under a random name,
/// renamed into place. Readers see the old file or the new one, never half.
/// A regular file it replaces keeps its owner and group (as far as the
/// caller may give them) and is never made more readable than it was, so
/// the permissions the package set (e.g. `root:siaga 0640`) survive.
pub fn write(path: &Path, data: &[u8], mode: u32) -> Result<(), WriteError> {
    use std::os::unix::fs::MetadataExt;
    let mut tmp = create_beside(path, mode)?;
    tmp.write_all(data).map_err(err(path))?;
    let mut mode = mode;
    if let Ok(old) = std::fs::symlink_metadata(path)
        && old.file_type().is_file()
    {
        mode &= old.mode() & 0o777;
        // Not permitted to an ordinary user for another's file: then the
        // new file is the caller's, with the narrower mode.
        let _ = std::os::unix::fs::fchown(tmp.as_file(), Some(old.uid()), Some(old.gid()));
    }
    // The mode asked for, whatever the umask made of it.
    tmp.as_file()
        .set_permissions(Permissions::from_mode(mode))
        .map_err(err(path))?;
    persist(tmp, path)
}

/// Opens `path` for appending (created with `mode` if missing) without
/// following a symlink at its last component.
pub fn append(path: &Path, mode: u32) -> Result<File, WriteError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(err(path))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_symlink_at_the_destination_or_an_old_temp_name_is_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, "root's file\n").unwrap();
        let dir = tmp.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        // What a service user could plant: the temp names used before, and
        // the destination itself.
        for planted in ["revoked.toml.tmp", ".budi.toml.tmp", "collector.tmp"] {
            std::os::unix::fs::symlink(&victim, dir.join(planted)).unwrap();
        }
        let dest = dir.join("revoked.toml");
        std::os::unix::fs::symlink(&victim, &dest).unwrap();

        write(&dest, b"new list\n", PUBLIC).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root's file\n");
        let m = std::fs::symlink_metadata(&dest).unwrap();
        assert!(m.file_type().is_file(), "the link was replaced by a file");
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "new list\n");
        assert_eq!(m.permissions().mode() & 0o777, PUBLIC);

        let key = dir.join("user.key");
        write(&key, b"secret", PRIVATE).unwrap();
        let m = std::fs::metadata(&key).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, PRIVATE);
        // A file the package narrowed stays as narrow.
        let conf = dir.join("budi.toml");
        std::fs::write(&conf, "old").unwrap();
        std::fs::set_permissions(&conf, Permissions::from_mode(0o640)).unwrap();
        write(&conf, b"new", PUBLIC).unwrap();
        let m = std::fs::metadata(&conf).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o640);

        // Appending refuses a symlink.
        let log = dir.join("audit.jsonl");
        std::os::unix::fs::symlink(&victim, &log).unwrap();
        assert!(append(&log, PRIVATE).is_err());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root's file\n");
        // No temporary file is left behind.
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp") && n.starts_with(".revoked"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("nope").join("x.toml");
        let e = write(&p, b"x", PUBLIC).unwrap_err();
        assert!(e.to_string().starts_with(&p.display().to_string()), "{e}");
    }
}
