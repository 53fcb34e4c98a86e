//! How far a copy is: a line per table, updated in place on a terminal.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// What a copy tells as it goes (see [`copy_database`](super::copy_database)).
pub trait CopyProgress {
    /// `copied` of the `total` rows of `table` are written (the total was
    /// counted at the start, in the same snapshot).
    fn update(&mut self, table: &str, copied: u64, total: u64);
    /// Every row of `table` is written (not yet committed: the whole copy
    /// commits at the end).
    fn done(&mut self, table: &str, copied: u64);
}

/// Tells nothing.
impl CopyProgress for () {
    fn update(&mut self, _: &str, _: u64, _: u64) {}
    fn done(&mut self, _: &str, _: u64) {}
}

/// A line per table on stderr: on a terminal, rewritten in place as rows
/// go (at most ten times a second); otherwise written once the table is
/// done, so that a log gets one plain line per table.
#[derive(Debug)]
pub struct TerminalProgress {
    tty: bool,
    last: Option<Instant>,
}

/// How often a terminal line is rewritten at most.
const EVERY: Duration = Duration::from_millis(100);

impl TerminalProgress {
    /// Progress on stderr, in place when stderr is a terminal.
    pub fn stderr() -> TerminalProgress {
        TerminalProgress {
            tty: std::io::stderr().is_terminal(),
            last: None,
        }
    }
}

impl CopyProgress for TerminalProgress {
    fn update(&mut self, table: &str, copied: u64, total: u64) {
        if !self.tty || self.last.is_some_and(|t| t.elapsed() < EVERY) {
            return;
        }
        self.last = Some(Instant::now());
        let percent = (copied * 100).checked_div(total).unwrap_or(100);
        // \r and "erase to the end of the line": the same line again.
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[K{table:<10} {copied:>10} of {total} rows ({percent}%)"
        );
        let _ = err.flush();
    }

    fn done(&mut self, table: &str, copied: u64) {
        self.last = None;
        let erase = if self.tty { "\r\x1b[K" } else { "" };
        let _ = writeln!(std::io::stderr(), "{erase}{table:<10} {copied:>10} rows");
    }
}
