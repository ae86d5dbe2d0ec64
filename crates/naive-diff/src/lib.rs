//! The naive full-walk differ: merge-join of base and new tree, continuity-compatible changes (fallback and oracle) (work in progress).
