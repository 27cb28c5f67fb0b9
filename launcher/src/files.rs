//! Writing the files a hop reads (a VCL, an Nginx configuration, a password file) where no
//! other user can redirect them.

use crate::LaunchError;
use plan::HopFile;
use std::os::unix::fs::PermissionsExt;

/// Files are written readable by everyone, in directories anyone can traverse: `varnishd`
/// reads its VCL after dropping privileges to its own user. A password file is the owner's.
/// They are never written through a symbolic link, nor into a directory another user owns:
/// under `/tmp`, another user could have prepared either, to have a root process write
/// elsewhere.
pub(crate) fn write_file(file: &HopFile) -> Result<(), LaunchError> {
    use std::io::Write;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let err = |e: std::io::Error| LaunchError::WriteFile {
        path: file.path.clone(),
        reason: e.to_string(),
    };
    let unsafe_dir = |reason: &str| LaunchError::WriteFile {
        path: file.path.clone(),
        reason: reason.to_string(),
    };
    if let Some(dir) = file.path.parent() {
        match std::fs::symlink_metadata(dir) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(unsafe_dir("its directory is a symbolic link"))
            }
            Ok(meta) if meta.uid() != nix::unistd::geteuid().as_raw() => {
                return Err(unsafe_dir("its directory belongs to another user"))
            }
            Ok(_) => {}
            Err(_) => {
                std::fs::create_dir_all(dir).map_err(err)?;
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
                    .map_err(err)?;
            }
        }
    }
    // Passwords (an htpasswd) are for the hop alone, which runs as this user (Nginx's
    // workers too: see flowctl's `user root;`).
    let mode = if file.htpasswd_from_env.is_empty() {
        0o644
    } else {
        0o600
    };
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&file.path)
        .map_err(err)?;
    out.write_all(file.content.as_bytes()).map_err(err)?;
    std::fs::set_permissions(&file.path, std::fs::Permissions::from_mode(mode)).map_err(err)
}
