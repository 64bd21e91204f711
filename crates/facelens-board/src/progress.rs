//! The one progress-bar look of facelens binaries.
//!
//! Bars draw on stderr only when a person watches: with `CI` set or stderr redirected they are
//! hidden, so logs and captured test output stay free of terminal escapes.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

const TEMPLATE: &str = "{msg:>12} [{bar:30}] {pos}/{len} {elapsed_precise} (eta {eta})";

/// A bar of `len` steps (0 if unknown yet: set it later with `set_length`). Label it with
/// `with_message`. Ticks steadily so that slow steps still show the bar is alive.
pub fn bar(len: u64) -> ProgressBar {
    if std::env::var_os("CI").is_some() || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(TEMPLATE) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(500));
    bar
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_template_parses() {
        assert!(indicatif::ProgressStyle::with_template(super::TEMPLATE).is_ok());
    }
}
