//! Progress bars for the stages (indicatif). The CLI decides where they
//! draw: stderr when it is a terminal, nowhere otherwise (CI logs get the
//! summary and `--json` instead).

use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The bars of one build.
#[derive(Debug, Clone)]
pub struct Progress {
    multi: MultiProgress,
}

impl Progress {
    /// Bars drawn by `multi`.
    pub fn new(multi: MultiProgress) -> Self {
        Self { multi }
    }

    /// No bars at all.
    pub fn hidden() -> Self {
        Self::new(MultiProgress::with_draw_target(ProgressDrawTarget::hidden()))
    }

    fn add(&self, bar: ProgressBar, stage: &str, template: &str) -> ProgressBar {
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        let bar = self.multi.add(bar);
        bar.set_style(style);
        bar.set_prefix(stage.to_owned());
        bar
    }

    /// A counted stage (packages).
    pub fn counter(&self, stage: &str, len: u64) -> ProgressBar {
        self.add(
            ProgressBar::new(len),
            stage,
            "{prefix:>10} [{bar:30}] {pos}/{len} {wide_msg}",
        )
    }

    /// A stage measured in bytes (image writing, compression).
    pub fn bytes(&self, stage: &str, expected: u64) -> ProgressBar {
        self.add(
            ProgressBar::new(expected),
            stage,
            "{prefix:>10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        )
    }

    /// A stage with no measure (a spinner and the time).
    pub fn spinner(&self, stage: &str) -> ProgressBar {
        let bar = self.add(
            ProgressBar::new_spinner(),
            stage,
            "{prefix:>10} {spinner} {elapsed} {wide_msg}",
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    }
}
