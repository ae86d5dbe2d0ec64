//! Streams a change stream as an OCI layer tar, byte-identical to containerd's writer (work in progress).
