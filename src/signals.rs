//! Stopping cleanly on SIGTERM and SIGINT (the server and `overcli monitor`).

use crate::error::Result;

/// SIGTERM and SIGINT, caught from the moment this is created (register it
/// before announcing that the server is up, so an early signal is not lost).
pub struct StopSignal(signal_hook::iterator::Signals);

impl std::fmt::Debug for StopSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StopSignal")
    }
}

impl StopSignal {
    /// Starts catching SIGTERM and SIGINT.
    pub fn register() -> Result<StopSignal> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        Ok(StopSignal(signal_hook::iterator::Signals::new([
            SIGTERM, SIGINT,
        ])?))
    }

    /// Blocks until one of them arrives.
    pub fn wait(mut self) {
        let _ = self.0.forever().next();
    }
}
