//! One directory level of the merge-join: the changes among a directory's children and the
//! child directories to descend into, in canonical order.

use fs_change::order::join;
use fs_change::{
    same_file, stat_verdict, Change, ChangeKind, DirEntryName, Entry, FileType, Meta, SameOptions,
    Side, StatVerdict, TreeDir, CAPABILITY_XATTR,
};

use crate::error::NaiveError;

/// What the walk does next at one position of a directory's merged listing.
#[derive(Debug)]
pub(crate) enum Step {
    /// Emit this change.
    Emit(Change),
    /// Compare the children of this child directory next (pre-order: after its own change).
    Descend {
        /// The child's relative path.
        path: Vec<u8>,
        /// The child's name within the directory.
        name: Box<[u8]>,
        /// Whether the base has a directory at this path (else every child is an `Add`).
        base_is_dir: bool,
    },
    /// A name both listings call a directory (by `d_type`): it is compared once both sides are
    /// open for the descent ([`compare_open_dirs`]) — an `fstat` and an `flistxattr` on each fd
    /// instead of a `statx` and a `listxattrat` by name — then emitted if changed and descended
    /// into. Should either side no longer open as a directory, [`compare_pair`] decides by name.
    Pair {
        /// The child's relative path.
        path: Vec<u8>,
        /// The child's name within the directory.
        name: Box<[u8]>,
    },
}

/// Counts of what one level compared.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct LevelCount {
    /// Entries looked at (union of both listings).
    pub(crate) entries: u64,
}

/// Merge-joins the listings of `base` (absent: everything is new) and `new` at `path`, and
/// returns the steps in canonical order.
///
/// Per continuity `doubleWalkDiff`: only in new → `Add`; only in base → `Delete` (nothing below
/// it); in both → `Modify` unless *sameFile*, and `Unmodified` for a same non-directory with
/// `nlink > 1`. A directory replaced by a non-directory is one `Modify`, its old children are
/// implied gone, so there is nothing to descend into.
pub(crate) fn compare_level<B: TreeDir, N: TreeDir>(
    base: Option<&B>,
    new: &N,
    path: &[u8],
    opts: SameOptions,
    steps: &mut Vec<Step>,
) -> Result<LevelCount, NaiveError> {
    let new_names = new.list()?;
    let base_names = match base {
        Some(b) => b.list()?,
        None => Vec::new(),
    };
    let mut count = LevelCount::default();
    let mut bi = base_names.iter().peekable();
    let mut ni = new_names.iter().peekable();
    loop {
        let order = match (bi.peek(), ni.peek()) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(b), Some(n)) => b.name.cmp(&n.name),
        };
        count.entries += 1;
        match order {
            std::cmp::Ordering::Less => {
                let Some(b) = bi.next() else { break };
                steps.push(Step::Emit(Change::delete(join(path, &b.name))));
            }
            std::cmp::Ordering::Greater => {
                let Some(n) = ni.next() else { break };
                let meta = stat_present(new, &n.name)?;
                push_entry(new, &n.name, path, ChangeKind::Add, meta, false, steps);
            }
            std::cmp::Ordering::Equal => {
                let (Some(b), Some(n)) = (bi.next(), ni.next()) else {
                    break;
                };
                let base_dir = base.ok_or_else(|| unreachable_base(new, n))?;
                let both_dirs =
                    b.file_type == Some(FileType::Dir) && n.file_type == Some(FileType::Dir);
                match both_dirs && opts.capability_only() {
                    true => steps.push(Step::Pair {
                        path: join(path, &n.name),
                        name: n.name.clone(),
                    }),
                    false => compare_pair(base_dir, new, &n.name, path, opts, steps)?,
                }
            }
        }
    }
    Ok(count)
}

/// The steps for a name present in both `base` and `new` (in the directory at `path`), decided
/// by name: both `lstat`s, then continuity *sameFile*.
pub(crate) fn compare_pair<B: TreeDir, N: TreeDir>(
    base: &B,
    new: &N,
    name: &[u8],
    path: &[u8],
    opts: SameOptions,
    steps: &mut Vec<Step>,
) -> Result<(), NaiveError> {
    let bmeta = stat_present(base, name)?;
    let nmeta = stat_present(new, name)?;
    let same = same_file(
        Side {
            dir: base,
            name,
            meta: &bmeta,
        },
        Side {
            dir: new,
            name,
            meta: &nmeta,
        },
        opts,
    )?;
    let kind = if !same {
        Some(ChangeKind::Modify)
    } else if nmeta.is_multiply_linked() {
        Some(ChangeKind::Unmodified)
    } else {
        None
    };
    match kind {
        Some(kind) => push_entry(new, name, path, kind, nmeta, bmeta.is_dir(), steps),
        None if nmeta.is_dir() => steps.push(Step::Descend {
            path: join(path, name),
            name: name.into(),
            base_is_dir: bmeta.is_dir(),
        }),
        None => {}
    }
    Ok(())
}

/// continuity *sameFile* (compat mode) for a directory open on both sides: the stat fields of
/// the two fds, then `security.capability` read through them. Returns the new side's metadata
/// with the verdict.
///
/// # Errors
/// Stat-ing either directory or reading a capability failed.
pub(crate) fn compare_open_dirs<B: TreeDir, N: TreeDir>(
    base: &B,
    new: &N,
    opts: SameOptions,
) -> Result<(bool, Meta), NaiveError> {
    let bmeta = base.stat_self()?;
    let nmeta = new.stat_self()?;
    let same = match stat_verdict(&bmeta, &nmeta, opts) {
        StatVerdict::SameInode => true,
        StatVerdict::Different => false,
        StatVerdict::CompareXattrs | StatVerdict::CompareXattrsThenContent => {
            let b = base.rare_own_xattr(CAPABILITY_XATTR)?.unwrap_or_default();
            let n = new.rare_own_xattr(CAPABILITY_XATTR)?.unwrap_or_default();
            b == n
        }
    };
    Ok((same, nmeta))
}

/// The change of kind `kind` for the child `name` of `parent` (at relative path `path`), carrying
/// its metadata and where its content is read from.
pub(crate) fn entry_change<N: TreeDir>(
    parent: &N,
    name: &[u8],
    path: Vec<u8>,
    kind: ChangeKind,
    meta: Meta,
) -> Change {
    Change::with_entry(kind, path, Entry::new(meta, parent.source(name)))
}

fn push_entry<N: TreeDir>(
    new: &N,
    name: &[u8],
    path: &[u8],
    kind: ChangeKind,
    meta: Meta,
    base_is_dir: bool,
    steps: &mut Vec<Step>,
) {
    let child = join(path, name);
    steps.push(Step::Emit(entry_change(
        new,
        name,
        child.clone(),
        kind,
        meta,
    )));
    if meta.is_dir() {
        steps.push(Step::Descend {
            path: child,
            name: name.into(),
            base_is_dir,
        });
    }
}

fn stat_present<D: TreeDir>(dir: &D, name: &[u8]) -> Result<Meta, NaiveError> {
    dir.stat(name)?.ok_or_else(|| NaiveError::Vanished {
        path: dir.display_path(name),
    })
}

fn unreachable_base<N: TreeDir>(new: &N, n: &DirEntryName) -> NaiveError {
    // A name matched in the base listing implies the base directory was open.
    NaiveError::Vanished {
        path: new.display_path(&n.name),
    }
}
