//! Progress on stderr for long work a person waits for: a bar when the total
//! is known, a counting spinner otherwise. Only when stderr is a terminal
//! (a pipe, a file or CI gets nothing), so `--json` stdout and logs stay clean.

use std::io::IsTerminal as _;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// The display on the terminal now, for [`LogWriter`].
static SHOWN: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// A progress display, or nothing when stderr is not a terminal. Every
/// method is a no-op on nothing; dropping it leaves the last state drawn,
/// [`Progress::finish`] clears it.
#[derive(Debug, Default)]
pub struct Progress(Option<ProgressBar>);

impl Progress {
    /// Nothing shown (for `--json`, or where no one watches).
    pub fn hidden() -> Progress {
        Progress(None)
    }

    /// A bar over `total` items, labelled `what` ("rows redriven").
    pub fn bar(total: u64, what: &str) -> Progress {
        Progress::on_terminal(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(style(&format!(
                "{{bar:30}} {{human_pos}}/{{human_len}} {what} ({{per_sec}}, ETA {{eta}})"
            )));
            bar
        })
    }

    /// A spinner counting items, labelled `what` ("DELIVERED rows changed").
    pub fn counter(what: &str) -> Progress {
        Progress::on_terminal(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(style(&format!(
                "{{spinner}} {{human_pos}} {what} ({{per_sec}}, {{elapsed}})"
            )));
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        })
    }

    /// A spinner with a message that [`Progress::message`] replaces, for
    /// work without a count (an index backfill).
    pub fn spinner(message: &str) -> Progress {
        Progress::on_terminal(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(style("{spinner} {msg} ({elapsed})"));
            bar.set_message(message.to_string());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        })
    }

    fn on_terminal(make: impl FnOnce() -> ProgressBar) -> Progress {
        let bar = std::io::stderr().is_terminal().then(make);
        if let Some(bar) = &bar {
            *SHOWN.lock().expect("not poisoned") = Some(bar.clone());
        }
        Progress(bar)
    }

    /// Whether anything is drawn (stderr is a terminal and it is not hidden).
    pub fn is_shown(&self) -> bool {
        self.0.is_some()
    }

    /// Sets the count done so far.
    pub fn set(&self, n: u64) {
        if let Some(bar) = &self.0 {
            bar.set_position(n);
        }
    }

    /// Sets the total (for a bar whose total is learnt as it goes).
    pub fn set_total(&self, total: u64) {
        if let Some(bar) = &self.0 {
            bar.set_length(total);
        }
    }

    /// Replaces a spinner's message.
    pub fn message(&self, message: String) {
        if let Some(bar) = &self.0 {
            bar.set_message(message);
        }
    }

    /// Prints a line on stdout, the bar hidden meanwhile so the two do not
    /// garble each other on one terminal.
    pub fn println(&self, line: String) {
        match &self.0 {
            Some(bar) => bar.suspend(|| println!("{line}")),
            None => println!("{line}"),
        }
    }

    /// Removes the display.
    pub fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    /// Log lines stop making way for it (one display at a time here).
    fn drop(&mut self) {
        if self.0.is_some() {
            *SHOWN.lock().expect("not poisoned") = None;
        }
    }
}

/// Stderr for log lines ([`crate::telemetry::init_with`]): the progress
/// display, if any, is hidden while a line is written, so the two do not
/// share a line of the terminal.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let shown = SHOWN.lock().expect("not poisoned").clone();
        match shown {
            Some(bar) => bar.suspend(|| std::io::stderr().write(buf)),
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).expect("a valid template")
}
