//! Test-tree kit: seeded realistic trees, seeded mutations, kernel overlay fixtures and tree snapshots (work in progress).
