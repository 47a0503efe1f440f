//! Progress of the long build steps (loading a large checkpoint, quantizing its layers), for a
//! front end to draw.
//!
//! The library only reports; nothing is drawn unless a front end installs an [`Observer`] with
//! [`set_observer`] (the `dynq` command line draws bars on a terminal). The macro, build scripts
//! and tests install none and pay nothing.

use std::sync::OnceLock;

/// Receives the build's steps. Installed once per process with [`set_observer`].
pub trait Observer: Send + Sync {
    /// A step begins: `total` units of work (`None` for a step of unknown length), named by
    /// `message` (`"loading weights"`, `"quantizing"`, ...). The returned [`Step`] is told of
    /// progress and dropped when the step ends.
    fn begin(&self, message: &'static str, total: Option<usize>) -> Box<dyn Step>;
}

/// One running step of an [`Observer`]; it ends when dropped.
pub trait Step {
    /// `n` more units of the step are done.
    fn advance(&self, n: usize);
}

static OBSERVER: OnceLock<Box<dyn Observer>> = OnceLock::new();

/// Installs the process's observer. Returns `false` (and drops `observer`) if one was
/// installed before.
///
/// ```
/// struct Quiet;
/// impl dynq_build::progress::Observer for Quiet {
///     fn begin(&self, _: &'static str, _: Option<usize>) -> Box<dyn dynq_build::progress::Step> {
///         struct Nothing;
///         impl dynq_build::progress::Step for Nothing {
///             fn advance(&self, _: usize) {}
///         }
///         Box::new(Nothing)
///     }
/// }
/// assert!(dynq_build::progress::set_observer(Box::new(Quiet)));
/// ```
pub fn set_observer(observer: Box<dyn Observer>) -> bool {
    OBSERVER.set(observer).is_ok()
}

/// A step as the library sees it: reported to the observer if there is one.
pub struct Progress(Option<Box<dyn Step>>);

impl Progress {
    /// A step of `len` units.
    pub fn bar(len: usize, message: &'static str) -> Self {
        Progress(OBSERVER.get().map(|o| o.begin(message, Some(len))))
    }

    /// A step of unknown length.
    pub fn spinner(message: &'static str) -> Self {
        Progress(OBSERVER.get().map(|o| o.begin(message, None)))
    }

    /// One more unit done.
    pub fn inc(&self) {
        if let Some(s) = &self.0 {
            s.advance(1);
        }
    }
}
