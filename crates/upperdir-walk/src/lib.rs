//! The overlay-aware differ: walks only an overlay upperdir and looks the base up by path (work in progress).
