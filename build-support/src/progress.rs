//! Progress bars for the `dynq` tool.
//!
//! The library draws bars only after [`enable`] (which the command-line tool calls) and only when
//! stderr is a terminal: the macro, build scripts, tests and CI logs see nothing.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Lets the library draw progress bars on stderr when it is a terminal.
///
/// ```
/// dynq_build::progress::enable(); // in a test, stderr is no terminal: still nothing drawn
/// ```
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

fn visible() -> bool {
    ENABLED.load(Ordering::Relaxed) && std::io::stderr().is_terminal()
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
