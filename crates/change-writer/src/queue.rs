//! Entries waiting to be written, in output order, with what their headers need.

use std::collections::VecDeque;

use fs_change::{Meta, Source, Xattrs};

use crate::header::{EntryType, TarHeader};
use crate::readahead::{Pool, Ticket};

/// The header fields of an entry, owned while it waits in the queue.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub entry_type: EntryType,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: i64,
    pub link_name: Box<[u8]>,
    pub dev_major: u32,
    pub dev_minor: u32,
}

impl Spec {
    /// Go `FileInfoHeader` + containerd: permission bits only, numeric owner, size for regular
    /// files, device numbers for devices, mtime clamped to the bound then truncated.
    pub(crate) fn new(meta: &Meta, entry_type: EntryType, bound: Option<i64>) -> Spec {
        let (dev_major, dev_minor) = match entry_type {
            EntryType::CharDevice | EntryType::BlockDevice => (meta.rdev_major, meta.rdev_minor),
            _ => (0, 0),
        };
        Spec {
            entry_type,
            mode: meta.permissions(),
            uid: meta.uid,
            gid: meta.gid,
            size: if entry_type == EntryType::Regular {
                meta.size
            } else {
                0
            },
            // Truncating (sec, nsec) to seconds keeps `sec`; clamping after a later time gives
            // the bound, and the bound is whole seconds.
            mtime: bound.map_or(meta.mtime, |b| meta.mtime.min(b)),
            link_name: Box::default(),
            dev_major,
            dev_minor,
        }
    }

    pub(crate) fn header<'a>(
        &'a self,
        name: &'a [u8],
        xattrs: &'a [(Vec<u8>, Vec<u8>)],
    ) -> TarHeader<'a> {
        TarHeader {
            name,
            entry_type: self.entry_type,
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            size: self.size,
            mtime: self.mtime,
            link_name: &self.link_name,
            dev_major: self.dev_major,
            dev_minor: self.dev_minor,
            xattrs,
        }
    }
}

/// An entry waiting to be written, in output order.
#[derive(Debug)]
pub(crate) enum Item {
    /// A whiteout or opaque marker.
    Whiteout { name: Vec<u8> },
    /// An entry without content.
    Plain {
        name: Vec<u8>,
        spec: Spec,
        xattrs: Xattrs,
        link_source: bool,
    },
    /// A hard link following the group source just written; carries its xattrs.
    GroupLink { name: Vec<u8>, spec: Spec },
    /// A regular file with content; `xattrs` is `None` when they come from the open fd.
    File {
        name: Vec<u8>,
        spec: Spec,
        xattrs: Option<Xattrs>,
        fetch: Fetch,
        link_source: bool,
    },
}

/// Where a file's bytes come from.
#[derive(Debug)]
pub(crate) enum Fetch {
    /// Read on the writer's thread when the entry is written.
    Serial(Source),
    /// Being read by the pool.
    Ahead(Ticket),
}

/// Entries waiting to be written, and the pool reading ahead for them. Dropping it drops the
/// waiting receivers before stopping the readers, so none stays blocked on a full channel.
#[derive(Debug)]
pub(crate) struct Queue {
    pub items: VecDeque<Item>,
    /// How many of `items` are files.
    pub files: usize,
    pub pool: Option<Pool>,
}

impl Queue {
    pub(crate) fn push(&mut self, item: Item) {
        if matches!(item, Item::File { .. }) {
            self.files += 1;
        }
        self.items.push_back(item);
    }

    pub(crate) fn pop(&mut self) -> Option<Item> {
        let item = self.items.pop_front()?;
        if matches!(item, Item::File { .. }) {
            self.files -= 1;
        }
        Some(item)
    }

    pub(crate) fn stop(&mut self) {
        self.items.clear();
        self.files = 0;
        if let Some(pool) = &mut self.pool {
            pool.stop();
        }
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        self.stop();
    }
}
