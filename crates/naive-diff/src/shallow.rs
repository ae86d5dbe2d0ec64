//! One directory level of the merge-join: the changes among a directory's children and the
//! child directories to descend into, in canonical order.

use fs_change::order::join;
use fs_change::{
    same_file, Change, ChangeKind, DirEntryName, Entry, Meta, SameOptions, Side, TreeDir,
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
                let meta = stat_present(new, n)?;
                push_entry(new, n, path, ChangeKind::Add, meta, false, steps);
            }
            std::cmp::Ordering::Equal => {
                let (Some(b), Some(n)) = (bi.next(), ni.next()) else {
                    break;
                };
                let base_dir = base.ok_or_else(|| unreachable_base(new, n))?;
                let bmeta = stat_present(base_dir, b)?;
                let nmeta = stat_present(new, n)?;
                let same = same_file(
                    Side {
                        dir: base_dir,
                        name: &b.name,
                        meta: &bmeta,
                    },
                    Side {
                        dir: new,
                        name: &n.name,
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
                    Some(kind) => push_entry(new, n, path, kind, nmeta, bmeta.is_dir(), steps),
                    None if nmeta.is_dir() => steps.push(Step::Descend {
                        path: join(path, &n.name),
                        name: n.name.clone(),
                        base_is_dir: bmeta.is_dir(),
                    }),
                    None => {}
                }
            }
        }
    }
    Ok(count)
}

fn push_entry<N: TreeDir>(
    new: &N,
    n: &DirEntryName,
    path: &[u8],
    kind: ChangeKind,
    meta: Meta,
    base_is_dir: bool,
    steps: &mut Vec<Step>,
) {
    let child = join(path, &n.name);
    let entry = Entry::new(meta, new.source(&n.name));
    steps.push(Step::Emit(Change::with_entry(kind, child.clone(), entry)));
    if meta.is_dir() {
        steps.push(Step::Descend {
            path: child,
            name: n.name.clone(),
            base_is_dir,
        });
    }
}

fn stat_present<D: TreeDir>(dir: &D, e: &DirEntryName) -> Result<Meta, NaiveError> {
    dir.stat(&e.name)?.ok_or_else(|| NaiveError::Vanished {
        path: dir.display_path(&e.name),
    })
}

fn unreachable_base<N: TreeDir>(new: &N, n: &DirEntryName) -> NaiveError {
    // A name matched in the base listing implies the base directory was open.
    NaiveError::Vanished {
        path: new.display_path(&n.name),
    }
}
