//! What the CLI says besides its output: the status lines on stderr, which `--quiet` silences,
//! and the human-readable sizes in them. A leaf module: every subcommand and the spinner use it.

use std::sync::atomic::{AtomicBool, Ordering};

static QUIET: AtomicBool = AtomicBool::new(false);

/// Silences status lines and the spinner for the rest of the process (`--quiet`). Errors and
/// warnings are still printed.
pub(crate) fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Whether `--quiet` was given.
pub(crate) fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// Prints `ovdiff: LINE` on stderr unless `--quiet`.
pub(crate) fn status(line: std::fmt::Arguments<'_>) {
    if !quiet() {
        eprintln!("ovdiff: {line}");
    }
}

/// Prints `ovdiff: warning: LINE` on stderr, `--quiet` or not: a warning is never silenced.
pub(crate) fn warn(line: std::fmt::Arguments<'_>) {
    eprintln!("ovdiff: warning: {line}");
}

/// `12.3 MiB`.
pub(crate) fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::human;

    #[test]
    fn human_sizes() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(3 << 20), "3.0 MiB");
    }
}
