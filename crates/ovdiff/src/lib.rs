//! ovdiff: overlay upperdir to OCI layer tar — library facade and CLI (work in progress).
