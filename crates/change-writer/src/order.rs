//! The canonical-order check the writer relies on, with the one exception opaque markers need.

use std::cmp::Ordering;

use fs_change::{compare_paths, OutOfOrder};

/// The canonical-order check, with the one exception opaque markers need.
#[derive(Debug, Default)]
pub(crate) struct Order {
    last: Vec<u8>,
    started: bool,
    /// The last path was set by an opaque marker for that directory.
    after_marker: bool,
}

impl Order {
    /// Accepts the next change path; `true` when it is the directory whose marker came just
    /// before (continuity order), which the caller must treat as already written.
    pub(crate) fn accept(&mut self, path: &[u8]) -> Result<bool, OutOfOrder> {
        if self.started {
            match compare_paths(&self.last, path) {
                Ordering::Less => {}
                Ordering::Equal if self.after_marker => {
                    self.after_marker = false;
                    return Ok(true);
                }
                _ => return Err(self.out_of_order(path)),
            }
        }
        self.set(path);
        self.after_marker = false;
        Ok(false)
    }

    /// Accepts a marker for `dir`: only before any child of `dir`, once.
    pub(crate) fn accept_marker(
        &mut self,
        dir: &[u8],
        marker_path: &[u8],
    ) -> Result<(), OutOfOrder> {
        if self.started {
            match compare_paths(&self.last, dir) {
                Ordering::Less => {}
                Ordering::Equal if !self.after_marker => {}
                _ => return Err(self.out_of_order(marker_path)),
            }
        }
        self.set(dir);
        self.after_marker = true;
        Ok(())
    }

    fn set(&mut self, path: &[u8]) {
        self.last.clear();
        self.last.extend_from_slice(path);
        self.started = true;
    }

    fn out_of_order(&self, path: &[u8]) -> OutOfOrder {
        OutOfOrder {
            path: path.into(),
            previous: self.last.as_slice().into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_allows_marker_before_children_only() {
        let mut o = Order::default();
        assert_eq!(o.accept(b"a").ok(), Some(false));
        assert!(o.accept_marker(b"a", b"a/.wh..wh..opq").is_ok());
        assert!(o.accept_marker(b"a", b"a/.wh..wh..opq").is_err());
        assert_eq!(o.accept(b"a/-x").ok(), Some(false));
        assert!(o.accept_marker(b"a", b"a/.wh..wh..opq").is_err());

        // continuity order: marker first, then the directory's own change.
        let mut o = Order::default();
        assert!(o.accept_marker(b"d", b"d/.wh..wh..opq").is_ok());
        assert_eq!(o.accept(b"d").ok(), Some(true));
        assert!(o.accept(b"d").is_err());
    }
}
