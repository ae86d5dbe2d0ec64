//! Which extended attributes go into the layer: the one policy the applier shares, defined in
//! [`fs_change::XattrPolicy`] with the reads it makes.

pub use fs_change::XattrPolicy;
