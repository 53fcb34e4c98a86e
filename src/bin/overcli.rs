//! `overcli`: parses arguments, then calls the overc library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use overc::monitor::{Monitor, check_all, check_table, worst};
use overc::{Client, Error, MonitorConfig, ServerId, ServiceReport, State, SystemClock};

const HELP: &str = "\
overcli — report to an overc server, and run Nagios plugins for it

Usage: overcli [-s URL] [-i NAME:KEY] [-v]... COMMAND [ARGS]

Commands:
  ping                                    check the server and the key
  service-status PERIOD NAME STATE [INFO] report one service's state
  alert [--service NAME] MESSAGE          send an alert
  silence DURATION [--service PATTERN] [COMMENT]
                                          hold back this host's notifications
                                          (90, 15m, 2h, 1d; at most 7d); prints its id
  unsilence [ID]                          end that silence, or all of this host's
  monitor CONFIG.ini                      run plugins continuously and report them
  check CONFIG.ini                        run every plugin once, print a table

Options:
  -s, --server URL        server URL (or OVERC_SERVER); user:password@ sends Basic auth
  -i, --server-id NAME:KEY  this host's identity (or OVERC_SERVER_ID)
  -c, --config CONFIG.ini   take the server, my-name, my-key and ca-file a
                          flag does not give from a monitor config
      --ca-file PEM       trust these CA certificates for HTTPS instead of the
                          bundled roots (or the monitor config's ca-file, or
                          OVERC_CA_FILE)
  -v, --verbose           more logging (repeat for more)
  -h, --help              help (also after a command)
  -V, --version           print the version

STATE: OK, WARN (or WARNING), FAIL (or ERR, CRITICAL) or UNK (or UNKNOWN),
in any case, or a Nagios code 0 to 3.
A MESSAGE or INFO that starts with - goes after --:
  overcli alert -- '-5 degrees in the cold room'

Exit status: 0 success, 1 server unreachable or 5xx, 2 usage or config error,
3 refused by the server (400/403/404).";

const COMMAND_HELP: &[(&str, &str)] = &[
    (
        "ping",
        "Usage: overcli -s URL -i NAME:KEY ping\n\nChecks the server is reachable and accepts this host's key.",
    ),
    (
        "service-status",
        "Usage: overcli -s URL -i NAME:KEY service-status PERIOD NAME STATE [INFO]\n\nReports one service. PERIOD: seconds until the next report is due.\nSTATE: OK, WARN (or WARNING), FAIL (or ERR, CRITICAL) or UNK (or UNKNOWN),\nin any case, or a Nagios exit code 0 to 3. An INFO that starts with - goes\nafter --: overcli service-status 60 db OK -- '-1 rows'",
    ),
    (
        "alert",
        "Usage: overcli -s URL -i NAME:KEY alert [--service NAME] MESSAGE\n\nSends an alert, optionally about a service. A MESSAGE that starts with -\ngoes after --: overcli alert -- '-5 degrees'",
    ),
    (
        "silence",
        "Usage: overcli [-s URL -i NAME:KEY | -c CONFIG.ini] silence DURATION [--service PATTERN] [COMMENT]\n\nHolds back the notifications about this host (only its services matching\nPATTERN, with * and ?) for DURATION: seconds, or whole numbers with s, m, h\nor d (90, 15m, 2h, 1d), at most 7d. Problems that start meanwhile are\nrecorded, not notified; those still open when it ends are notified then.\nPrints the silence's id. Typical: overcli silence 15m 'kernel update' && reboot",
    ),
    (
        "unsilence",
        "Usage: overcli [-s URL -i NAME:KEY | -c CONFIG.ini] unsilence [ID]\n\nEnds this host's silence ID, or all of its silences; prints the ids ended.\nProblems they held back that are still open are notified at once.",
    ),
    (
        "monitor",
        "Usage: overcli [-s URL] [-i NAME:KEY] [--ca-file PEM] monitor CONFIG.ini\n\nRuns every [service:NAME] plugin of the config on its schedule and reports\nthe results. -s/-i/--ca-file override the config's [overc] server, my-name,\nmy-key, ca-file.\nKeeps running while the server is away; stops on SIGTERM/SIGINT\n(SIGHUP is logged and ignored).",
    ),
    (
        "check",
        "Usage: overcli check CONFIG.ini\n\nRuns every plugin of a monitor config once, prints a table, and exits with\nthe worst plugin's code in the Nagios order: 2 FAIL over 3 UNK over 1 WARN\nover 0 OK. Sends nothing.",
    ),
];

#[derive(Default)]
struct Args {
    server: Option<String>,
    id: Option<String>,
    ca_file: Option<PathBuf>,
    config: Option<PathBuf>,
    verbose: u8,
    command: Option<String>,
    service: Option<String>,
    rest: Vec<String>,
}

fn usage(msg: impl Into<String>) -> Error {
    Error::Config(msg.into())
}

fn parse_args() -> Result<Result<Args, String>, lexopt::Error> {
    use lexopt::prelude::*;
    let mut a = Args::default();
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Short('s') | Long("server") => a.server = Some(parser.value()?.string()?),
            Short('i') | Long("server-id") => a.id = Some(parser.value()?.string()?),
            Long("ca-file") => a.ca_file = Some(parser.value()?.into()),
            Short('c') | Long("config") => a.config = Some(parser.value()?.into()),
            Short('v') | Long("verbose") => a.verbose += 1,
            Long("service") if matches!(a.command.as_deref(), Some("alert" | "silence")) => {
                a.service = Some(parser.value()?.string()?)
            }
            Short('h') | Long("help") => {
                let cmd = a.command.as_deref().unwrap_or("");
                let text = COMMAND_HELP
                    .iter()
                    .find(|(c, _)| *c == cmd)
                    .map(|(_, h)| *h)
                    .unwrap_or(HELP);
                return Ok(Err(text.to_owned()));
            }
            Short('V') | Long("version") => {
                return Ok(Err(
                    concat!("overcli ", env!("CARGO_PKG_VERSION")).to_owned()
                ));
            }
            Value(v) if a.command.is_none() => a.command = Some(v.string()?),
            Value(v) => a.rest.push(v.string()?),
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(Ok(a))
}

/// A CA file to trust and where it was given (`--ca-file`, a config key), for errors.
type CaFile = (PathBuf, String);

fn client(
    server: Option<String>,
    id: Option<String>,
    ca_file: Option<CaFile>,
) -> Result<Client, Error> {
    let server = server
        .or_else(|| std::env::var("OVERC_SERVER").ok())
        .ok_or_else(|| usage("no server given: use -s URL or set OVERC_SERVER"))?;
    let id = id
        .or_else(|| std::env::var("OVERC_SERVER_ID").ok())
        .ok_or_else(|| usage("no server id given: use -i NAME:KEY or set OVERC_SERVER_ID"))?;
    let client = Client::new(&server, ServerId::parse(&id)?)?;
    let ca_file = ca_file.or_else(|| {
        std::env::var_os("OVERC_CA_FILE")
            .filter(|p| !p.is_empty())
            .map(|p| (PathBuf::from(p), "environment OVERC_CA_FILE".to_owned()))
    });
    match ca_file {
        Some((path, from)) => client.with_ca_file(&path).map_err(|e| match e {
            Error::Config(why) => usage(format!("{from}: {why}")),
            other => other,
        }),
        None => Ok(client),
    }
}

/// The client of a one-shot command: flags first, then `--config`'s
/// `[overc]` keys, then the environment.
fn one_shot_client(a: &Args) -> Result<Client, Error> {
    let (mut server, mut id) = (a.server.clone(), a.id.clone());
    let mut ca_file = a.ca_file.clone().map(|p| (p, "--ca-file".to_owned()));
    if let Some(path) = &a.config {
        let config = MonitorConfig::from_file(path)?;
        server = server.or_else(|| config.server.clone());
        id = id.or_else(|| Some(format!("{}:{}", config.name.clone()?, config.key.clone()?)));
        ca_file = ca_file.or_else(|| {
            let from = format!("{}: [overc] ca-file", path.display());
            config.ca_file.clone().map(|p| (p, from))
        });
    }
    client(server, id, ca_file)
}

fn try_main(a: Args) -> Result<ExitCode, Error> {
    // The usage is the answer to running it bare.
    let cmd = a
        .command
        .clone()
        .ok_or_else(|| usage(format!("no command given\n\n{HELP}")))?;
    let arity = |min: usize, max: usize| {
        if a.rest.len() < min || a.rest.len() > max {
            Err(usage(format!(
                "wrong number of arguments for {cmd}; see overcli {cmd} --help"
            )))
        } else {
            Ok(())
        }
    };
    let ca_flag = a.ca_file.clone().map(|p| (p, "--ca-file".to_owned()));
    match cmd.as_str() {
        "ping" => {
            arity(0, 0)?;
            one_shot_client(&a)?.ping()?;
            println!("pong");
        }
        "service-status" => {
            arity(3, 4)?;
            let period: u32 = a.rest[0].parse().ok().filter(|p| *p >= 1).ok_or_else(|| {
                usage(format!(
                    "PERIOD should be a number of seconds, got {:?}",
                    a.rest[0]
                ))
            })?;
            let state = State::parse_nagios(&a.rest[2]).ok_or_else(|| {
                usage(format!(
                    "STATE should be OK, WARN, FAIL, UNK (or WARNING, CRITICAL, UNKNOWN, 0 to 3), got {:?}",
                    a.rest[2]
                ))
            })?;
            let report = ServiceReport {
                name: a.rest[1].clone(),
                state,
                info: a.rest.get(3).cloned().unwrap_or_default(),
                period: None,
                retries: None,
            };
            one_shot_client(&a)?.report(period, vec![report])?;
        }
        "alert" => {
            arity(1, 1)?;
            one_shot_client(&a)?.alert(&a.rest[0], a.service.as_deref())?;
        }
        "silence" => {
            arity(1, 2)?;
            let seconds = overc::policy::parse_silence_duration("DURATION", &a.rest[0])?;
            let comment = a.rest.get(1).map_or("", String::as_str);
            let id = one_shot_client(&a)?.silence(seconds, a.service.as_deref(), comment)?;
            println!("{id}");
        }
        "unsilence" => {
            arity(0, 1)?;
            let id = match a.rest.first() {
                Some(text) => Some(text.parse::<i64>().map_err(|_| {
                    usage(format!("ID should be a silence's number, got {text:?}"))
                })?),
                None => None,
            };
            for ended in one_shot_client(&a)?.unsilence(id)? {
                println!("{ended}");
            }
        }
        "check" => {
            arity(1, 1)?;
            let config = MonitorConfig::from_file(&PathBuf::from(&a.rest[0]))?;
            let results = check_all(&config);
            print!("{}", check_table(&results));
            return Ok(ExitCode::from(worst(&results).exit_code() as u8));
        }
        "monitor" => {
            arity(1, 1)?;
            let config = MonitorConfig::from_file(&PathBuf::from(&a.rest[0]))?;
            let id =
                a.id.or_else(|| Some(format!("{}:{}", config.name.clone()?, config.key.clone()?)));
            let ca_file = ca_flag.or_else(|| {
                let from = format!("{}: [overc] ca-file", a.rest[0]);
                config.ca_file.clone().map(|p| (p, from))
            });
            let client = client(a.server.or_else(|| config.server.clone()), id, ca_file)?;
            let stop = overc::StopSignal::register()?;
            let monitor = Monitor::new(config, client.clone(), Arc::new(SystemClock));
            let stopper = monitor.stopper();
            std::thread::spawn(move || {
                stop.wait();
                stopper.stop();
            });
            if let Err(e) = monitor.run() {
                // Tell the server why monitoring stopped, if it can hear it.
                let _ = client.alert(&format!("overcli monitor stopped: {e}"), None);
                return Err(e);
            }
        }
        other => {
            return Err(usage(format!(
                "unknown command {other:?}; see overcli --help"
            )));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Ok(a)) => a,
        Ok(Err(text)) => {
            println!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!(
                "overcli: {e}\nTry 'overcli --help'. An argument that starts with - goes after --."
            );
            return ExitCode::from(2);
        }
    };
    let level = match (args.verbose, args.command.as_deref()) {
        // A long-running monitor says what it does (start, stop, signals).
        (0, Some("monitor")) => "warn,overc=info",
        (v, _) => ["warn", "info", "debug", "trace"][usize::from(v.min(3))],
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level)).init();
    match try_main(args) {
        Ok(code) => code,
        Err(e) => {
            let code = match &e {
                Error::Config(_) => 2,
                // SPEC §6: 3 is the server refusing the request itself (404:
                // `unsilence ID` of a silence this host does not have).
                Error::Refused {
                    status: 400 | 403 | 404,
                    ..
                } => 3,
                _ => 1,
            };
            match &e {
                Error::Config(m) => eprintln!("overcli: {m}"),
                Error::Refused { status, message } => {
                    eprintln!("overcli: the server answered {status}: {message}")
                }
                other => eprintln!("overcli: {other}"),
            }
            ExitCode::from(code)
        }
    }
}
