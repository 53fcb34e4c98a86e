//! `overc-server`: parses arguments, then runs the overc library's server.

use std::path::PathBuf;
use std::process::ExitCode;

use overc::config::Database;
use overc::{Server, ServerConfig};

const HELP: &str = "\
overc-server — push-based service monitoring server

Usage: overc-server [OPTIONS]
       overc-server test-alert --config FILE
       overc-server copy --from SOURCE --to TARGET

Options:
  -c, --config FILE     INI config file (also OVERC_CONFIG)
  -l, --listen ADDR     address to listen on (default 127.0.0.1:5000)
  -d, --database PATH   SQLite database file, sqlite:PATH, or postgres://… (default ./overc.db)
  -v, --verbose         more logging (-v info, -vv debug)
  -h, --help            print this help
  -V, --version         print the version

test-alert sends a test alert through every [alert:NAME] plugin of the
config and prints whether each worked (exit status 1 if any failed).

copy moves an installation between databases, each sqlite:PATH, a file
path or postgres://…: hosts with their key hashes, services, history,
events, silences, acknowledgements and deliveries, every id kept. Stop the
server first (a running SQLite server is refused). The source is only read
and must be at this version's schema; the target must be new or empty and
gets everything in one transaction (a failed copy leaves it empty).
Progress goes to stderr; exit status 1 on any error.

Without a config it runs on ./overc.db at 127.0.0.1:5000.
Any [overc] key can also be set as OVERC_<KEY>, e.g. OVERC_DATABASE.";

#[derive(Default)]
struct Args {
    test_alert: bool,
    copy: bool,
    from: Option<PathBuf>,
    to: Option<PathBuf>,
    config: Option<PathBuf>,
    listen: Option<String>,
    database: Option<PathBuf>,
    verbose: u8,
}

/// Fills `args` from the command line (partly, on an error).
fn parse_args(args: &mut Args) -> Result<Option<&'static str>, lexopt::Error> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Short('c') | Long("config") => args.config = Some(parser.value()?.into()),
            Short('l') | Long("listen") => args.listen = Some(parser.value()?.string()?),
            Short('d') | Long("database") => args.database = Some(parser.value()?.into()),
            Short('v') | Long("verbose") => args.verbose += 1,
            Long("from") if args.copy => args.from = Some(parser.value()?.into()),
            Long("to") if args.copy => args.to = Some(parser.value()?.into()),
            Short('h') | Long("help") => return Ok(Some(HELP)),
            Value(v) if v == "test-alert" && !args.test_alert && !args.copy => {
                args.test_alert = true
            }
            Value(v) if v == "copy" && !args.test_alert && !args.copy => args.copy = true,
            Short('V') | Long("version") => {
                return Ok(Some(concat!("overc-server ", env!("CARGO_PKG_VERSION"))));
            }
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(None)
}

/// A database named on the command line: `sqlite:PATH`, a path or a URL.
fn database_arg(flag: &str, value: PathBuf) -> Result<Database, overc::Error> {
    match value.to_str() {
        Some(text) => overc::config::parse_database(text)
            .map_err(|why| overc::Error::Config(format!("{flag}: {why}"))),
        // Not UTF-8, so no URL: a file name.
        None => Ok(Database::Sqlite(value)),
    }
}

fn copy(args: Args) -> Result<ExitCode, overc::Error> {
    init_logging(args.verbose, Some("warn"));
    if args.config.is_some() || args.listen.is_some() || args.database.is_some() {
        return Err(overc::Error::Config(
            "copy takes --from SOURCE, --to TARGET and -v only".into(),
        ));
    }
    let (Some(from), Some(to)) = (args.from, args.to) else {
        return Err(overc::Error::Config(
            "copy needs --from SOURCE and --to TARGET".into(),
        ));
    };
    let (from, to) = (database_arg("--from", from)?, database_arg("--to", to)?);
    let summary =
        overc::store::copy_database(&from, &to, &mut overc::store::TerminalProgress::stderr())?;
    println!("copied {summary} from {from} to {to}");
    Ok(ExitCode::SUCCESS)
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
        config.set_database(database_arg("--database", db)?);
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
    let mut args = Args::default();
    match parse_args(&mut args) {
        Ok(None) => {}
        Ok(Some(text)) => {
            println!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("overc-server: {e}\nTry 'overc-server --help'.");
            // `copy` fails with 1 whatever went wrong.
            return ExitCode::from(if args.copy { 1 } else { 2 });
        }
    }
    let copying = args.copy;
    let result = if copying { copy(args) } else { try_main(args) };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("overc-server: {e}");
            ExitCode::from(match e {
                overc::Error::Config(_) if !copying => 2,
                _ => 1,
            })
        }
    }
}
