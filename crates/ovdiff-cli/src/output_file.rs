//! Where `diff -o PATH` writes, and only there.
//!
//! - A new path or a regular file is replaced whole or not at all: the layer is written to an
//!   unnamed `O_TMPFILE` in the same directory and linked into place (`linkat` + `renameat`)
//!   only when complete. The unnamed file is in no directory listing, so an output inside the
//!   tree being diffed never records its own temporary file, and a killed process leaves
//!   nothing behind: the kernel frees an unlinked file with its last descriptor.
//! - A symlink is followed: to a regular file, that file is replaced as above; dangling, its
//!   target is created; to anything else, that node is written.
//! - A character or block device or a fifo (`/dev/null`, `/dev/stdout`, a named pipe) is opened
//!   and written; it is never replaced by a regular file.
//!
//! Filesystems without `O_TMPFILE` get a named temporary file beside the output instead; it is
//! removed on error, on drop, and on `SIGINT`/`SIGTERM` (see [`cleanup`]).

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{linkat, openat, renameat, AtFlags, Mode, OFlags, CWD};

use crate::Failure;

/// An output being written; [`OutputFile::commit`] puts it in place.
#[derive(Debug)]
pub(crate) struct OutputFile {
    file: File,
    finish: Finish,
    /// The path the user gave, for messages.
    shown: PathBuf,
}

#[derive(Debug)]
enum Finish {
    /// Written where it is: a device, a fifo, or the new target of a dangling symlink.
    InPlace,
    /// An unnamed file in `dir`, linked to `name` there on commit.
    Unnamed {
        dir: File,
        dir_path: PathBuf,
        name: OsString,
    },
    /// A named temporary file (no `O_TMPFILE` here), renamed to `dest` on commit.
    Named {
        tmp: tempfile::TempPath,
        dest: PathBuf,
    },
}

/// Where an output path leads, once symlinks are followed.
enum Destination {
    /// Replace (or create) the regular file at this path.
    Replace(PathBuf),
    /// Open and write the node at this path.
    Write(PathBuf),
}

impl OutputFile {
    /// Opens the output for `path` (see the module docs for each kind of node).
    ///
    /// # Errors
    /// A directory, an unresolvable path, or a failed open/create, naming the path.
    pub(crate) fn create(path: &Path) -> Result<OutputFile, Failure> {
        let shown = path.to_path_buf();
        let failed =
            |what: &str, e: io::Error| Failure::Run(format!("{what} {}: {e}", path.display()));
        let finish_in_place = |file: File| OutputFile {
            file,
            finish: Finish::InPlace,
            shown: shown.clone(),
        };
        match destination(path).map_err(|e| failed("resolving", e))? {
            Destination::Write(node) => {
                let file = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o644)
                    .open(&node)
                    .map_err(|e| failed("opening", e))?;
                Ok(finish_in_place(file))
            }
            Destination::Replace(dest) => {
                let (dir_path, name) = split(&dest).ok_or_else(|| {
                    Failure::Usage(format!("-o {}: not a file name", path.display()))
                })?;
                match unnamed_in(&dir_path) {
                    Ok((dir, file)) => Ok(OutputFile {
                        file,
                        finish: Finish::Unnamed {
                            dir,
                            dir_path,
                            name,
                        },
                        shown,
                    }),
                    Err(e) if tmpfile_unsupported(&e) => {
                        let tmp = tempfile::Builder::new()
                            .prefix(".ovdiff-layer-")
                            .suffix(".tmp")
                            .tempfile_in(&dir_path)
                            .map_err(|e| {
                                Failure::Run(format!(
                                    "creating a temporary file in {}: {e}",
                                    dir_path.display()
                                ))
                            })?;
                        let (file, tmp) = tmp.into_parts();
                        cleanup::register(&tmp);
                        Ok(OutputFile {
                            file,
                            finish: Finish::Named { tmp, dest },
                            shown,
                        })
                    }
                    Err(e) => Err(Failure::Run(format!(
                        "creating the output in {}: {e}",
                        dir_path.display()
                    ))),
                }
            }
        }
    }

    /// The file to write the layer to.
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// Makes the written layer durable and puts it in place.
    ///
    /// # Errors
    /// `fsync`, `fchmod`, `linkat` or `rename` failures, naming the output.
    pub(crate) fn commit(self) -> Result<(), Failure> {
        let failed = |what: &str, e: io::Error| {
            Failure::Run(format!("{what} {}: {e}", self.shown.display()))
        };
        match &self.finish {
            Finish::InPlace => Ok(()),
            Finish::Unnamed {
                dir,
                dir_path,
                name,
            } => {
                durable(&self.file).map_err(|e| failed("writing", e))?;
                link_into_place(&self.file, dir, dir_path, name).map_err(|e| failed("placing", e))
            }
            Finish::Named { tmp, dest } => {
                durable(&self.file).map_err(|e| failed("writing", e))?;
                std::fs::rename(tmp, dest).map_err(|e| failed("placing", e))?;
                cleanup::unregister(tmp);
                Ok(())
            }
        }
    }
}

impl Drop for OutputFile {
    fn drop(&mut self) {
        if let Finish::Named { tmp, .. } = &self.finish {
            cleanup::unregister(tmp); // TempPath's own drop removes the file
        }
    }
}

/// Follows `path` to what the output must do there.
fn destination(path: &Path) -> io::Result<Destination> {
    let own = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Destination::Replace(path.to_path_buf()))
        }
        Err(e) => return Err(e),
    };
    let target = if own.file_type().is_symlink() {
        match std::fs::metadata(path) {
            Ok(m) => m,
            // Dangling: open(O_CREAT) creates the target through the link.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Destination::Write(path.to_path_buf()))
            }
            Err(e) => return Err(e),
        }
    } else {
        own.clone()
    };
    let ft = target.file_type();
    if ft.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::IsADirectory,
            "is a directory",
        ));
    }
    if ft.is_file() {
        let dest = if own.file_type().is_symlink() {
            std::fs::canonicalize(path)?
        } else {
            path.to_path_buf()
        };
        return Ok(Destination::Replace(dest));
    }
    if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
        return Ok(Destination::Write(path.to_path_buf()));
    }
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "not a file, device or fifo",
    ))
}

/// The directory (`.` for a bare name) and the file name of `path`.
fn split(path: &Path) -> Option<(PathBuf, OsString)> {
    let name = path.file_name()?.to_os_string();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Some((dir, name))
}

/// An `O_TMPFILE` in `dir` (`openat(O_TMPFILE)`), with the directory kept open to link it.
fn unnamed_in(dir: &Path) -> io::Result<(File, File)> {
    let dir_fd = openat(
        CWD,
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let fd = openat(
        &dir_fd,
        ".",
        OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )?;
    Ok((File::from(dir_fd), File::from(fd)))
}

/// Filesystems and kernels without `O_TMPFILE` answer these (open(2)).
fn tmpfile_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(code) if code == rustix::io::Errno::OPNOTSUPP.raw_os_error()
            || code == rustix::io::Errno::ISDIR.raw_os_error()
            || code == rustix::io::Errno::INVAL.raw_os_error()
    )
}

/// `fsync`s the data and sets mode 0644 whatever the umask, as a published layer file has.
fn durable(file: &File) -> io::Result<()> {
    file.sync_data()?;
    rustix::fs::fchmod(file, Mode::from_raw_mode(0o644))?;
    Ok(())
}

/// Gives the unnamed `file` the name `name` in `dir`, replacing what is there: `linkat` to a
/// fresh temporary name (a link cannot replace), then `renameat` over the destination.
fn link_into_place(file: &File, dir: &File, dir_path: &Path, name: &OsString) -> io::Result<()> {
    let tmp = format!(".ovdiff-layer-{}.tmp", std::process::id());
    let proc_path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(file));
    let linked = linkat(
        CWD,
        proc_path.as_str(),
        dir,
        tmp.as_str(),
        AtFlags::SYMLINK_FOLLOW,
    )
    // Without /proc, AT_EMPTY_PATH (CAP_DAC_READ_SEARCH on older kernels).
    .or_else(|_| linkat(file.as_fd(), "", dir, tmp.as_str(), AtFlags::EMPTY_PATH));
    linked?;
    let in_dir = dir_path.join(&tmp);
    cleanup::register(&in_dir);
    let renamed = renameat(dir, tmp.as_str(), dir, name.as_os_str());
    cleanup::unregister(&in_dir);
    if let Err(e) = renamed {
        let _ = rustix::fs::unlinkat(dir, tmp.as_str(), AtFlags::empty());
        return Err(e.into());
    }
    Ok(())
}

/// Temporary names that must not outlive the process: removed on `SIGINT` and `SIGTERM` by a
/// watcher thread (`signal-hook`), which then dies of the signal as the default action would.
pub(crate) mod cleanup {
    use std::path::{Path, PathBuf};
    use std::sync::{Mutex, Once};

    static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    static WATCH: Once = Once::new();

    /// Removes `path` if a terminating signal arrives before [`unregister`].
    pub(crate) fn register(path: &Path) {
        WATCH.call_once(start_watcher);
        if let Ok(mut p) = PENDING.lock() {
            p.push(path.to_path_buf());
        }
    }

    /// `path` is in place or gone: no longer the signal handler's to remove.
    pub(crate) fn unregister(path: &Path) {
        if let Ok(mut p) = PENDING.lock() {
            p.retain(|q| q != path);
        }
    }

    fn start_watcher() {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
            return; // no watcher: drop still removes the file on every normal exit
        };
        let _ = std::thread::Builder::new()
            .name("ovdiff-signals".into())
            .spawn(move || {
                if let Some(sig) = signals.forever().next() {
                    if let Ok(p) = PENDING.lock() {
                        for path in p.iter() {
                            let _ = std::fs::remove_file(path);
                        }
                    }
                    let _ = signal_hook::low_level::emulate_default_handler(sig);
                    std::process::exit(128 + sig);
                }
            });
    }
}
