//! `overcli monitor`'s config: where to report, as whom, and what to run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{folder_of, key_error, parse_ini, parse_num, read_file, split_command};
use crate::error::{Error, Result};
use crate::policy;

/// One `[service:NAME]` section of a monitor config.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    /// Service name as reported.
    pub name: String,
    /// Seconds between reports the server is promised.
    pub period: u32,
    /// Seconds reserved for the run and the trip to the server; 3 × the last
    /// run time when not set.
    pub max_lag: Option<f64>,
    /// Plugin timeout (default: the period).
    pub timeout: Duration,
    /// Program and arguments, split with shell-like quoting.
    pub command: Vec<String>,
    /// `retries`: non-OK results in a row before the server notifies the
    /// problem (SPEC §9); sent with each state; `None`: the server decides.
    pub retries: Option<u8>,
}

/// An `overcli monitor` config: where to report, as whom, and what to run.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorConfig {
    /// Server URL (`[overc] server`), if set.
    pub server: Option<String>,
    /// `[overc] my-name`.
    pub name: Option<String>,
    /// `[overc] my-key`.
    pub key: Option<String>,
    /// `[overc] ca-file`: PEM file of the CA certificates to trust for HTTPS
    /// instead of the bundled roots; a relative path is taken from the
    /// config file's folder.
    pub ca_file: Option<PathBuf>,
    /// The services, in file order.
    pub services: Vec<ServiceConfig>,
    /// Folder plugin commands run in (the config file's folder).
    pub base_dir: PathBuf,
}

impl MonitorConfig {
    /// Reads a monitor config file.
    ///
    /// # Errors
    /// As [`ServerConfig::from_file`](super::ServerConfig::from_file).
    pub fn from_file(path: &Path) -> Result<MonitorConfig> {
        let text = read_file(path)?;
        Self::from_ini_str(&text, &path.display().to_string(), &folder_of(path))
    }

    /// The pure twin of [`MonitorConfig::from_file`].
    ///
    /// # Errors
    /// As [`ServerConfig::from_ini_str`](super::ServerConfig::from_ini_str).
    pub fn from_ini_str(text: &str, source: &str, base_dir: &Path) -> Result<MonitorConfig> {
        let ini = parse_ini(text, source)?;
        let mut cfg = MonitorConfig {
            server: None,
            name: None,
            key: None,
            ca_file: None,
            services: Vec::new(),
            base_dir: base_dir.to_path_buf(),
        };
        for (section, props) in ini.iter() {
            let section = section.unwrap_or("");
            if section.is_empty() {
                if let Some((k, _)) = props.iter().next() {
                    return Err(Error::Config(format!(
                        "{source}: key {k:?} is outside of any section; put it under [overc]"
                    )));
                }
            } else if section == "overc" {
                for (k, v) in props.iter() {
                    let v = Some(v.trim().to_owned()).filter(|v| !v.is_empty());
                    match k {
                        "server" => cfg.server = v,
                        "my-name" => cfg.name = v,
                        "my-key" => cfg.key = v,
                        // Read when the client is made, so that `check`,
                        // which sends nothing, does not need it.
                        "ca-file" => cfg.ca_file = v.map(|p| base_dir.join(p)),
                        _ => return Err(key_error(source, section, k, "unknown key")),
                    }
                }
            } else if let Some(name) = section.strip_prefix("service:") {
                if name.is_empty() || name.chars().count() > 64 {
                    return Err(Error::Config(format!(
                        "{source}: [{section}]: the service name should be 1 to 64 characters"
                    )));
                }
                if cfg.services.iter().any(|s| s.name == name) {
                    return Err(Error::Config(format!(
                        "{source}: [{section}] appears twice"
                    )));
                }
                let mut period = None;
                let mut max_lag = None;
                let mut timeout = None;
                let mut command = None;
                let mut retries = None;
                for (k, v) in props.iter() {
                    match k {
                        "retries" => {
                            let n: i64 = parse_num(v, source, section, k)?;
                            retries = Some(
                                policy::check_retries(n)
                                    .map_err(|why| key_error(source, section, k, &why))?,
                            );
                        }
                        "period" => {
                            let p: u32 = parse_num(v, source, section, k)?;
                            if !(1..=crate::protocol::MAX_PERIOD).contains(&p) {
                                return Err(key_error(
                                    source,
                                    section,
                                    k,
                                    "should be 1 to 31536000 seconds",
                                ));
                            }
                            period = Some(p);
                        }
                        "max-lag" => {
                            let l: f64 = parse_num(v, source, section, k)?;
                            if !(0.0..=86_400.0).contains(&l) {
                                return Err(key_error(
                                    source,
                                    section,
                                    k,
                                    "should be 0 to 86400 seconds",
                                ));
                            }
                            max_lag = Some(l);
                        }
                        "timeout" => {
                            let t: f64 = parse_num(v, source, section, k)?;
                            if !(t > 0.0 && t <= 86_400.0) {
                                return Err(key_error(
                                    source,
                                    section,
                                    k,
                                    "should be more than 0 and at most 86400 seconds",
                                ));
                            }
                            timeout = Some(Duration::from_secs_f64(t));
                        }
                        "command" => {
                            command = Some(split_command(v).ok_or_else(|| {
                                key_error(source, section, k, "empty or badly quoted command")
                            })?)
                        }
                        _ => return Err(key_error(source, section, k, "unknown key")),
                    }
                }
                let period =
                    period.ok_or_else(|| key_error(source, section, "period", "missing"))?;
                let command =
                    command.ok_or_else(|| key_error(source, section, "command", "missing"))?;
                cfg.services.push(ServiceConfig {
                    name: name.to_owned(),
                    period,
                    max_lag,
                    timeout: timeout.unwrap_or(Duration::from_secs(u64::from(period))),
                    command,
                    retries,
                });
            } else {
                return Err(Error::Config(format!(
                    "{source}: unknown section [{section}] (expected [overc] or [service:NAME])"
                )));
            }
        }
        if cfg.services.is_empty() {
            return Err(Error::Config(format!(
                "{source}: no [service:NAME] sections"
            )));
        }
        Ok(cfg)
    }
}
