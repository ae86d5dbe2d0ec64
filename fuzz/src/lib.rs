//! Shared kit for ovdiff's fuzz targets: a jail for applying hostile layers, a tree walker that
//! snapshots everything an escape could touch, a raw tar writer for seeds, and a second tar reader
//! following Go's `archive/tar` rules.
//!
//! Targets live in `fuzz_targets/`; this library holds what more than one of them (and the seed
//! generator `gen_corpus.rs`) needs. It is built with the same sanitizer flags as the targets, so
//! keep it free of anything slow per input.

pub mod go_tar;
pub mod jail;
pub mod overlay_model;
pub mod rawtar;
pub mod tartest;
pub mod walk;
