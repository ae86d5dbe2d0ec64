//! Root package: owns the workspace-level integration tests and benchmarks.

/// The root README's library example, compiled as a doctest so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
