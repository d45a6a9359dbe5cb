//! Progress of long work (indexing, import and export, tagging): a bar on a terminal, and where
//! stderr is not one (cron, `nohup`, a systemd unit, `2>log`), the same line written out every
//! [`LOG_EVERY`], which indicatif alone leaves blank: a 20,000-file run said nothing for 15 s.

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};

/// How often a log gets a progress line.
const LOG_EVERY: Duration = Duration::from_secs(30);

/// A progress bar drawn with `template` (indicatif's syntax), or a hidden one when `quiet`.
pub fn bar(template: &str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let log = LogLines::new(Box::new(std::io::stderr()), LOG_EVERY);
        bar.set_draw_target(ProgressDrawTarget::term_like(Box::new(log)));
    }
    bar.set_style(ProgressStyle::with_template(template).expect("a valid progress template"));
    bar
}

/// A "terminal" that keeps what indicatif draws and writes it to `out` as one line, at most once
/// every `every` (the first after `every`: a line at the start says nothing).
struct LogLines {
    out: Mutex<Box<dyn Write + Send>>,
    every: Duration,
    /// What was drawn since the last flush, and when a line was last written.
    state: Mutex<(String, Instant)>,
}

impl LogLines {
    fn new(out: Box<dyn Write + Send>, every: Duration) -> Self {
        Self { out: Mutex::new(out), every, state: Mutex::new((String::new(), Instant::now())) }
    }
}

impl std::fmt::Debug for LogLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogLines").field("every", &self.every).finish_non_exhaustive()
    }
}

impl TermLike for LogLines {
    fn width(&self) -> u16 {
        // The bar's own part of the line: short, as a log line should be.
        60
    }

    fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }

    fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }

    fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }

    fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }

    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.write_str(s)
    }

    fn write_str(&self, s: &str) -> std::io::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.0.push_str(s.trim());
        Ok(())
    }

    fn clear_line(&self) -> std::io::Result<()> {
        Ok(())
    }

    fn flush(&self) -> std::io::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (drawn, last) = &mut *state;
        if !drawn.is_empty() && last.elapsed() >= self.every {
            let mut out = self.out.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            writeln!(out, "{drawn}")?;
            *last = Instant::now();
        }
        drawn.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A writer whose bytes the test can read.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_log_gets_the_drawn_line_once_per_interval() {
        let written = Shared::default();
        let bar = ProgressBar::new(10);
        let log = LogLines::new(Box::new(written.clone()), Duration::from_millis(300));
        bar.set_draw_target(ProgressDrawTarget::term_like(Box::new(log)));
        bar.set_style(ProgressStyle::with_template("{pos}/{len} pictures").unwrap());
        bar.set_position(3); // drawn before the interval has passed: not written
        std::thread::sleep(Duration::from_millis(350));
        bar.set_position(7);
        bar.set_position(8);
        let text = String::from_utf8(written.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text, "7/10 pictures\n");
    }
}
