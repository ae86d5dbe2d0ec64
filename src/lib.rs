//! Root package: owns the workspace-level integration tests and benchmarks.
