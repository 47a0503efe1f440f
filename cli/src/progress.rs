//! Progress bars on stderr for the `dynq` tool: an observer of dynq-build's steps, and bars for
//! this crate's own long steps.
//!
//! Nothing is drawn before [`enable`] (which the command calls), nor when stderr is not a
//! terminal: tests and CI logs see nothing.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Draws progress bars on stderr when it is a terminal, for this crate's steps and, through
/// [`dynq_build::progress::set_observer`], for the library's.
///
/// ```
/// dynq_cli::progress::enable(); // in a test, stderr is no terminal: still nothing drawn
/// ```
pub fn enable() {
    if !ENABLED.swap(true, Ordering::Relaxed) {
        dynq_build::progress::set_observer(Box::new(Bars));
    }
}

fn visible() -> bool {
    ENABLED.load(Ordering::Relaxed) && std::io::stderr().is_terminal()
}

/// The observer that draws the library's steps.
struct Bars;

impl dynq_build::progress::Observer for Bars {
    fn begin(
        &self,
        message: &'static str,
        total: Option<usize>,
    ) -> Box<dyn dynq_build::progress::Step> {
        Box::new(Drawn(match total {
            Some(n) => bar(n, message),
            None => spinner(message),
        }))
    }
}

/// A drawn step, cleared when it ends.
struct Drawn(ProgressBar);

impl dynq_build::progress::Step for Drawn {
    fn advance(&self, n: usize) {
        self.0.inc(n as u64);
    }
}

impl Drop for Drawn {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

/// A bar over `len` steps, hidden unless [`enable`]d and on a terminal.
pub(crate) fn bar(len: usize, message: &'static str) -> ProgressBar {
    if !visible() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} {elapsed}")
        .expect("valid template")
        .progress_chars("=> ");
    ProgressBar::new(len as u64)
        .with_style(style)
        .with_message(message)
}

/// A spinner for a step of unknown length, hidden unless [`enable`]d and on a terminal.
pub(crate) fn spinner(message: &'static str) -> ProgressBar {
    if !visible() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("valid template");
    let p = ProgressBar::new_spinner()
        .with_style(style)
        .with_message(message);
    p.enable_steady_tick(Duration::from_millis(100));
    p
}
