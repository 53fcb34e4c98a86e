//! `overc-server`: parses arguments, then runs the overc library's server.

use std::path::PathBuf;
use std::process::ExitCode;

use overc::{Server, ServerConfig};

const HELP: &str = "\
overc-server — push-based service monitoring server

Usage: overc-server [OPTIONS]
       overc-server test-alert --config FILE

Options:
  -c, --config FILE     INI config file (also OVERC_CONFIG)
  -l, --listen ADDR     address to listen on (default 127.0.0.1:5000)
  -d, --database PATH   SQLite database file, sqlite:PATH, or postgres://… (default ./overc.db)
  -v, --verbose         more logging (-v info, -vv debug)
  -h, --help            print this help
  -V, --version         print the version

test-alert sends a test alert through every [alert:NAME] plugin of the
config and prints whether each worked (exit status 1 if any failed).

Without a config it runs on ./overc.db at 127.0.0.1:5000.
Any [overc] key can also be set as OVERC_<KEY>, e.g. OVERC_DATABASE.";

struct Args {
    test_alert: bool,
    config: Option<PathBuf>,
    listen: Option<String>,
    database: Option<PathBuf>,
    verbose: u8,
}

enum Parsed {
    Run(Args),
    Exit(&'static str),
}

fn parse_args() -> Result<Parsed, lexopt::Error> {
    use lexopt::prelude::*;
    let mut args = Args {
        test_alert: false,
        config: None,
        listen: None,
        database: None,
        verbose: 0,
    };
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Short('c') | Long("config") => args.config = Some(parser.value()?.into()),
            Short('l') | Long("listen") => args.listen = Some(parser.value()?.string()?),
            Short('d') | Long("database") => args.database = Some(parser.value()?.into()),
            Short('v') | Long("verbose") => args.verbose += 1,
            Short('h') | Long("help") => return Ok(Parsed::Exit(HELP)),
            Value(v) if v == "test-alert" && !args.test_alert => args.test_alert = true,
            Short('V') | Long("version") => {
                return Ok(Parsed::Exit(concat!(
                    "overc-server ",
                    env!("CARGO_PKG_VERSION")
                )));
            }
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(Parsed::Run(args))
}

fn init_logging(verbose: u8, configured: Option<&str>) {
    let default = match verbose {
        0 => configured.unwrap_or("warn,overc=info").to_owned(),
        1 => "info".to_owned(),
        _ => "debug".to_owned(),
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default)).init();
}

fn try_main(args: Args) -> Result<ExitCode, overc::Error> {
    let config_file = args
        .config
        .or_else(|| std::env::var_os("OVERC_CONFIG").map(PathBuf::from));
    let mut config = match &config_file {
        Some(path) => ServerConfig::from_file(path)?,
        None => ServerConfig::from_env()?,
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(db) = args.database {
        let db = match db.to_str() {
            Some(text) => overc::config::parse_database(text)
                .map_err(|why| overc::Error::Config(format!("--database: {why}")))?,
            // Not UTF-8, so no URL: a file name.
            None => overc::config::Database::Sqlite(db),
        };
        config.set_database(db);
    }
    init_logging(args.verbose, config.loglevel.as_deref());
    if args.test_alert {
        return test_alert(&config, config_file.is_some());
    }
    let stop = overc::StopSignal::register()?;
    match overc::server::raise_open_files_limit() {
        Some(n) => log::info!("open files limit: {n}"),
        None => log::info!("open files limit: unlimited"),
    }
    let server = Server::start(config)?;
    eprintln!("overc-server listening on {}", server.url());
    stop.wait();
    log::info!("stopping on signal");
    server.stop();
    Ok(ExitCode::SUCCESS)
}

fn test_alert(config: &ServerConfig, has_file: bool) -> Result<ExitCode, overc::Error> {
    if config.alert_plugins.is_empty() {
        return Err(overc::Error::Config(if has_file {
            "the config has no [alert:NAME] sections".into()
        } else {
            "test-alert needs --config FILE with [alert:NAME] sections".into()
        }));
    }
    let outcomes =
        overc::engine::send_test_alert(&overc::engine::EngineSettings::from(config).notifiers);
    let mut failed = 0;
    for o in &outcomes {
        match &o.failure {
            None => println!("{}: ok", o.plugin),
            Some(why) => {
                failed += 1;
                println!("{}: FAILED: {why}", o.plugin);
            }
        }
    }
    if failed > 0 {
        eprintln!(
            "overc-server: {failed} of {} alert plugins failed",
            outcomes.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Parsed::Run(args)) => args,
        Ok(Parsed::Exit(text)) => {
            println!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("overc-server: {e}\nTry 'overc-server --help'.");
            return ExitCode::from(2);
        }
    };
    match try_main(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("overc-server: {e}");
            ExitCode::from(match e {
                overc::Error::Config(_) => 2,
                _ => 1,
            })
        }
    }
}
