//! Progress of a fetch, reported to the caller (the library prints nothing).

/// Receives what a fetch is doing.
pub trait FetchProgress {
    /// Something the user should read once, such as a licence restriction.
    fn notice(&mut self, _message: &str) {}
    /// A download starts: `size` bytes in all, `done` of them already there (a resumed download).
    fn start(&mut self, _what: &str, _size: u64, _done: u64) {}
    /// `bytes` more bytes arrived.
    fn advance(&mut self, _bytes: u64) {}
    /// The download finished.
    fn finish(&mut self) {}
}

/// Reports nothing.
pub struct Quiet;

impl FetchProgress for Quiet {}

/// Adapts a [`FetchProgress`] to hf-hub's progress trait. hf-hub announces a file once per
/// attempt; only the first announcement starts it.
pub(crate) struct HfProgress<'a> {
    pub(crate) inner: &'a mut dyn FetchProgress,
    pub(crate) what: String,
    pub(crate) started: bool,
}

impl hf_hub::api::Progress for HfProgress<'_> {
    fn init(&mut self, size: usize, _filename: &str) {
        if !self.started {
            self.started = true;
            self.inner.start(&self.what, size as u64, 0);
        }
    }

    fn update(&mut self, size: usize) {
        self.inner.advance(size as u64);
    }

    fn finish(&mut self) {}
}

/// Progress bars on stderr, one per download, and notices printed there: for command-line
/// programs.
#[cfg(feature = "progress-bars")]
#[derive(Default)]
pub struct ProgressBars {
    bar: Option<indicatif::ProgressBar>,
}

#[cfg(feature = "progress-bars")]
impl FetchProgress for ProgressBars {
    fn notice(&mut self, message: &str) {
        eprintln!("{message}");
    }

    fn start(&mut self, what: &str, size: u64, done: u64) {
        let bar = indicatif::ProgressBar::new(size).with_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_message(what.to_string());
        bar.set_position(done);
        self.bar = Some(bar);
    }

    fn advance(&mut self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish();
        }
    }
}
