//! Stopping cleanly on SIGTERM and SIGINT (the server and `overcli monitor`).

use crate::error::Result;

/// SIGTERM and SIGINT, caught from the moment this is created (register it
/// before announcing that the server is up, so an early signal is not lost).
///
/// SIGHUP is caught as well and only logged: its default action would end a
/// daemon whose terminal went away or whose operator tried the usual
/// `kill -HUP` to reload, and reloading is not supported yet.
pub struct StopSignal(signal_hook::iterator::Signals);

impl std::fmt::Debug for StopSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StopSignal")
    }
}

impl StopSignal {
    /// Starts catching SIGTERM, SIGINT and SIGHUP.
    ///
    /// # Errors
    /// When the signal handlers cannot be installed.
    pub fn register() -> Result<StopSignal> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        Ok(StopSignal(signal_hook::iterator::Signals::new([
            SIGTERM, SIGINT, SIGHUP,
        ])?))
    }

    /// Blocks until SIGTERM or SIGINT arrives; logs every SIGHUP meanwhile.
    pub fn wait(mut self) {
        for signal in self.0.forever() {
            if signal == signal_hook::consts::SIGHUP {
                log::warn!(
                    "SIGHUP received: reloading the configuration is not supported yet; \
                     running on as before (SIGTERM stops)"
                );
                continue;
            }
            return;
        }
    }
}
