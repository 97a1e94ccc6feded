//! A progress bar over the images being decoded, on a terminal only (a log gets the
//! program's summary line instead).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// Counts decoded images from any thread.
pub struct Progress(Option<ProgressBar>);

impl Progress {
    pub fn start(images: usize, what: &str) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress(None);
        }
        let bar = ProgressBar::new(images as u64).with_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {pos}/{len} images, {per_sec}, eta {eta}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        Progress(Some(bar.with_message(format!("decoding {what}"))))
    }

    pub fn advance(&self) {
        if let Some(bar) = &self.0 {
            bar.inc(1);
        }
    }

    pub fn finish(self) {
        if let Some(bar) = self.0 {
            bar.finish_and_clear();
        }
    }
}
