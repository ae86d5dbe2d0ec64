//! A spinner on stderr for work that runs past a second, only when stderr is a terminal.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Shows `label: N changes, SIZE written` after a second of work; cleared when dropped.
#[derive(Debug)]
pub(crate) struct Spinner {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Spinner {
    /// Starts the display thread, or nothing when stderr is not a terminal.
    pub(crate) fn start(progress: Arc<ovdiff::Progress>, label: &'static str) -> Option<Spinner> {
        if crate::ui::quiet() || !std::io::stderr().is_terminal() {
            return None;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("ovdiff-progress".into())
            .spawn(move || show(&progress, label, &flag))
            .ok()?;
        Some(Spinner {
            stop,
            handle: Some(handle),
        })
    }
}

fn show(progress: &ovdiff::Progress, label: &str, stop: &AtomicBool) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(1) {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{spinner} {elapsed} {msg}") {
        bar.set_style(style);
    }
    while !stop.load(Ordering::Relaxed) {
        bar.set_message(format!(
            "{label}: {} changes, {} written",
            progress.changes(),
            crate::ui::human(progress.bytes())
        ));
        bar.tick();
        std::thread::sleep(Duration::from_millis(100));
    }
    bar.finish_and_clear();
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
