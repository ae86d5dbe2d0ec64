//! Applies OCI layer tars onto a directory or an overlay upperdir, contained against hostile input (work in progress).
