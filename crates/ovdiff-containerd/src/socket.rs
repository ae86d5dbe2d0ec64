//! The plugin's listening socket: a stale file left by a crash is replaced, a live server is
//! not; the socket is made mode 0660 and removed when the listener is dropped.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::PluginError;

/// A bound unix socket that removes its file when dropped.
#[derive(Debug)]
pub struct PluginSocket {
    path: PathBuf,
    listener: Option<tokio::net::UnixListener>,
}

impl PluginSocket {
    /// Binds `path` (mode 0660), replacing a stale socket file nobody answers on.
    ///
    /// # Errors
    /// [`PluginError::SocketInUse`] when a process answers there, [`PluginError::NotASocket`]
    /// for another kind of file, [`PluginError::Io`] when binding fails.
    pub fn bind(path: &Path) -> Result<PluginSocket, PluginError> {
        remove_stale(path)?;
        let listener = tokio::net::UnixListener::bind(path).map_err(|source| PluginError::Io {
            op: "bind",
            path: path.to_path_buf(),
            source,
        })?;
        let socket = PluginSocket {
            path: path.to_path_buf(),
            listener: Some(listener),
        };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(
            |source| PluginError::Io {
                op: "chmod 0660",
                path: path.to_path_buf(),
                source,
            },
        )?;
        Ok(socket)
    }

    /// The listener, once (the server takes it).
    pub fn take_listener(&mut self) -> Option<tokio::net::UnixListener> {
        self.listener.take()
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PluginSocket {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            if e.kind() != io::ErrorKind::NotFound {
                eprintln!(
                    "ovdiff-containerd: removing socket {}: {e}",
                    self.path.display()
                );
            }
        }
    }
}

fn remove_stale(path: &Path) -> Result<(), PluginError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(PluginError::Io {
                op: "stat",
                path: path.to_path_buf(),
                source,
            })
        }
    };
    if !meta.file_type().is_socket() {
        return Err(PluginError::NotASocket {
            path: path.to_path_buf(),
        });
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(PluginError::SocketInUse {
            path: path.to_path_buf(),
        }),
        Err(_) => std::fs::remove_file(path).map_err(|source| PluginError::Io {
            op: "remove stale socket",
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stale_socket_is_replaced_and_removed_on_drop() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("p.sock");
        // A socket file with nobody listening: what a killed process leaves.
        drop(std::os::unix::net::UnixListener::bind(&path).expect("bind"));
        assert!(path.exists());
        let sock = PluginSocket::bind(&path).expect("stale socket replaced");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o660);
        // A live one is not stolen.
        let err = PluginSocket::bind(&path).expect_err("in use");
        assert!(matches!(err, PluginError::SocketInUse { .. }), "{err}");
        drop(sock);
        assert!(!path.exists(), "socket removed on drop");
    }

    #[test]
    fn a_regular_file_is_not_replaced() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("p.sock");
        std::fs::write(&path, "x").expect("write");
        let err = PluginSocket::bind(&path).expect_err("not a socket");
        assert!(matches!(err, PluginError::NotASocket { .. }), "{err}");
        assert!(path.exists());
    }
}
