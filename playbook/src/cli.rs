//! The command line (stage **compile**): fixed flags with clap derive, one extra flag per
//! playbook input with the clap builder API, and the `run`, `validate` and `show` commands.
//!
//! Exit codes: `0` success; `1` invalid playbook or failed run; `2` bad command line
//! (unknown flag, bad value, missing argument); `130`/`143` run interrupted by SIGINT/SIGTERM.
//! `--help` and `--version` exit `0`. Command-line errors are printed as one line.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Arg, ArgAction, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use serde_json::Value;

use crate::error::Error;
use crate::log::Level;
use crate::runner::{Interrupt, RunOptions, execute, listen};
use crate::spec::{InputSpec, InputType, Playbook, load_file};

/// Exit code for success.
pub const EXIT_SUCCESS: u8 = 0;
/// Exit code for an invalid playbook or a failed run.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for a bad command line.
pub const EXIT_USAGE: u8 = 2;

const EXIT_CODES: &str = "Exit codes: 0 success, 1 failure (invalid playbook, failed run), 2 bad command line,\n\
130 interrupted by SIGINT, 143 interrupted by SIGTERM.\n\
Run `playbook run FILE --help` to see the flags a playbook's inputs add.";

#[derive(Debug, Parser)]
#[command(
    name = "playbook",
    version,
    about = "Runs Choria YAML playbooks",
    after_help = EXIT_CODES
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a playbook; each input of the playbook becomes a --flag
    Run(RunArgs),
    /// Check playbooks and list every problem with file:line:column
    Validate {
        /// Playbook files
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Show a playbook's metadata, input flags, node sets, tasks and hooks
    Show {
        /// Playbook file
        file: PathBuf,
    },
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Playbook file
    file: PathBuf,
    /// Write the YAML run report to this file (it must not exist yet)
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Log level, overriding the playbook's loglevel
    #[arg(long, value_name = "LEVEL", value_parser = ["debug", "info", "warn", "error", "fatal"])]
    loglevel: Option<String>,
    /// Print the report as JSON on stdout (human output moves to stderr)
    #[arg(long)]
    json: bool,
    /// Resolve inputs and node sets and print what each task would do, without doing it
    #[arg(long)]
    dry_run: bool,
    /// Choria broker (NATS) address, HOST:PORT or nats:// URL; repeatable. Falls back to
    /// --config, then CHORIA_SERVERS, then NATS_URL
    #[arg(long = "server", value_name = "HOST:PORT")]
    servers: Vec<String>,
    /// Choria client configuration file (reads plugin.choria.middleware_hosts,
    /// main_collective, plugin.choria.puppetdb_host/_port and the plugin.security TLS files)
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// PuppetDB URL for pql node sets, http(s)://HOST[:PORT] or HOST[:PORT] (https). Falls back
    /// to --config (plugin.choria.puppetdb_host/_port), then CHORIA_PUPPETDB_URL, then
    /// https://puppet:8081
    #[arg(long, value_name = "URL")]
    puppetdb: Option<String>,
    /// Seconds RPC requests wait for replies (default: the agent's DDL timeout for agents this
    /// build knows, else 10)
    #[arg(long, value_name = "SECONDS")]
    rpc_timeout: Option<f64>,
}

/// Sends `tracing` events to stderr when `PLAYBOOK_TRACE` holds a filter (e.g. `debug`).
pub fn init_tracing() {
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("PLAYBOOK_TRACE") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init();
    }
}

/// Runs the `playbook` command with the given arguments (including the program name) and
/// returns the process exit code.
pub fn run(args: Vec<OsString>) -> Result<u8, Error> {
    match dispatch(args) {
        Ok(code) => Ok(code),
        Err(Error::Runtime(e)) => Err(Error::Runtime(e)),
        Err(e @ Error::Usage(_)) => {
            let _ = writeln!(std::io::stderr(), "playbook: {e}");
            Ok(EXIT_USAGE)
        }
        Err(e @ (Error::Invalid(..) | Error::Output(_))) => {
            let _ = writeln!(std::io::stderr(), "{e}");
            Ok(EXIT_FAILURE)
        }
    }
}

fn dispatch(args: Vec<OsString>) -> Result<u8, Error> {
    let playbook = match find_run_file(&args) {
        Some(path) => Some(load_or_fail(&path)?),
        None => None,
    };
    let mut command = Cli::command();
    if let Some(pb) = &playbook {
        let flags: Vec<Arg> = pb.inputs.iter().filter_map(input_arg).collect();
        command = command.mut_subcommand("run", |c| c.args(flags));
    }
    let matches = match command.try_get_matches_from(&args) {
        Ok(m) => m,
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
                    | clap::error::ErrorKind::MissingSubcommand
            ) =>
        {
            // No command at all: the full usage helps more than one line.
            let _ = e.print();
            return Ok(EXIT_USAGE);
        }
        Err(e) if e.use_stderr() => return Err(Error::Usage(one_line(&e))),
        Err(e) => {
            let _ = e.print();
            return Ok(EXIT_SUCCESS);
        }
    };
    let cli = Cli::from_arg_matches(&matches).map_err(|e| Error::Usage(e.to_string()))?;
    match cli.command {
        Command::Validate { files } => Ok(validate(&files)),
        Command::Show { file } => {
            let pb = load_or_fail(&file)?;
            print!("{}", crate::spec::show::render(&pb));
            Ok(EXIT_SUCCESS)
        }
        Command::Run(run_args) => {
            let pb = match playbook {
                Some(pb) => pb,
                None => load_or_fail(&run_args.file)?,
            };
            let sub = matches
                .subcommand_matches("run")
                .ok_or_else(|| Error::Usage("missing run arguments".into()))?;
            let values = input_values(&pb, sub);
            run_playbook(&pb, run_args, values)
        }
    }
}

/// A clap error as one line: the message and its tips, without the usage block.
fn one_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let parts: Vec<&str> = text
        .lines()
        .take_while(|l| !l.starts_with("Usage:"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    format!("{} (see --help)", parts.join(" "))
}

/// Finds the playbook of a `run` command before full parsing, so its inputs can become flags.
fn find_run_file(args: &[OsString]) -> Option<PathBuf> {
    let strs: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let pos = strs.iter().position(|a| a == "run")?;
    let rest = &strs[pos + 1..];
    if let Some(yaml) = rest
        .iter()
        .find(|a| !a.starts_with('-') && (a.ends_with(".yaml") || a.ends_with(".yml")))
    {
        return Some(PathBuf::from(yaml));
    }
    let mut skip = false;
    for a in rest {
        if skip {
            skip = false;
            continue;
        }
        if matches!(
            a.as_str(),
            "--report"
                | "--loglevel"
                | "--server"
                | "--config"
                | "-c"
                | "--rpc-timeout"
                | "--puppetdb"
        ) {
            skip = true;
            continue;
        }
        if !a.starts_with('-') {
            return Some(PathBuf::from(a));
        }
    }
    None
}

fn load_or_fail(path: &Path) -> Result<Playbook, Error> {
    let (pb, diags) = load_file(path);
    match pb {
        Some(pb) => {
            for d in diags.items() {
                let _ = writeln!(std::io::stderr(), "{d}");
            }
            Ok(pb)
        }
        None => Err(Error::Invalid(diags, path.to_path_buf())),
    }
}

fn arg_id(name: &str) -> String {
    format!("input:{name}")
}

fn input_arg(input: &InputSpec) -> Option<Arg> {
    if input.dynamic {
        return None;
    }
    let ty = input.ty?;
    let mut help = format!("{} ({})", input.description, ty.name());
    if let Some(d) = &input.default {
        let shown = if input.sensitive {
            crate::log::MASK.to_string()
        } else {
            crate::template::stringify(d)
        };
        help.push_str(&format!(" default: {shown}"));
    }
    if input.data.is_some() {
        help.push_str(" [data-bound]");
    }
    if crate::spec::show::must_be_given(input) {
        help.push_str(match ty {
            InputType::Boolean => " [required: the flag must be given]",
            InputType::String
            | InputType::Integer
            | InputType::Float
            | InputType::Numeric
            | InputType::Array => " [required]",
        });
    }
    let name = input.name.to_ascii_lowercase();
    let arg = Arg::new(arg_id(&input.name))
        .long(name.clone())
        .help(help)
        .help_heading("Playbook inputs");
    Some(match ty {
        InputType::Boolean => arg.action(ArgAction::SetTrue),
        InputType::Array => arg
            .action(ArgAction::Append)
            .value_name(name.to_ascii_uppercase())
            .value_parser(move |s: &str| parse_value(InputType::String, s)),
        InputType::String | InputType::Integer | InputType::Float | InputType::Numeric => arg
            .action(ArgAction::Set)
            .value_name(name.to_ascii_uppercase())
            .value_parser(move |s: &str| parse_value(ty, s)),
    })
}

/// Converts a command-line string to the input's type.
pub(crate) fn parse_value(ty: InputType, s: &str) -> Result<Value, String> {
    match ty {
        InputType::String | InputType::Array => Ok(Value::String(s.to_string())),
        InputType::Boolean => match s {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(format!("{s} is not a boolean")),
        },
        InputType::Integer => s
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| format!("{s} is not an integer")),
        InputType::Float => s
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| format!("{s} is not a float")),
        InputType::Numeric => match s.trim().parse::<i64>() {
            Ok(i) => Ok(Value::from(i)),
            Err(_) => parse_value(InputType::Float, s).map_err(|_| format!("{s} is not a number")),
        },
    }
}

fn input_values(pb: &Playbook, matches: &clap::ArgMatches) -> BTreeMap<String, Value> {
    let mut values = BTreeMap::new();
    for input in &pb.inputs {
        let (false, Some(ty)) = (input.dynamic, input.ty) else {
            continue;
        };
        let id = arg_id(&input.name);
        let value = match ty {
            InputType::Boolean => matches.get_flag(&id).then_some(Value::Bool(true)),
            InputType::Array => matches
                .get_many::<Value>(&id)
                .map(|vals| Value::Array(vals.cloned().collect())),
            InputType::String | InputType::Integer | InputType::Float | InputType::Numeric => {
                matches.get_one::<Value>(&id).cloned()
            }
        };
        if let Some(v) = value {
            values.insert(input.name.clone(), v);
        }
    }
    values
}

fn validate(files: &[PathBuf]) -> u8 {
    let mut code = EXIT_SUCCESS;
    for file in files {
        let (pb, diags) = load_file(file);
        for d in diags.items() {
            let _ = writeln!(std::io::stderr(), "{d}");
        }
        let warnings = diags.items().len() - diags.errors().len();
        if pb.is_some() {
            println!("{}: ok ({warnings} warning(s))", file.display());
        } else {
            println!(
                "{}: invalid ({} error(s), {warnings} warning(s))",
                file.display(),
                diags.errors().len()
            );
            code = EXIT_FAILURE;
        }
    }
    code
}

/// Resolves PuppetDB's URL and TLS files (see [`crate::puppetdb::settings`]).
fn puppetdb_settings(args: &RunArgs) -> Result<crate::puppetdb::PuppetDbSettings, Error> {
    let file = match &args.config {
        Some(path) => agents::ChoriaConfig::load(path)
            .map_err(|e| Error::Usage(format!("cannot use Choria client config: {e}")))?,
        None => agents::ChoriaConfig::default(),
    };
    let env = std::env::var(crate::puppetdb::settings::ENV_URL).ok();
    crate::puppetdb::PuppetDbSettings::resolve(args.puppetdb.as_deref(), &file, env.as_deref())
        .map_err(|e| Error::Usage(e.to_string()))
}

fn run_playbook(
    pb: &Playbook,
    args: RunArgs,
    values: BTreeMap<String, Value>,
) -> Result<u8, Error> {
    if let Some(report) = &args.report
        && report.exists()
    {
        return Err(Error::Output(format!(
            "Could not write report the file {}: it already exists",
            report.display()
        )));
    }
    let mut broker = crate::choria::BrokerSettings::resolve(&args.servers, args.config.as_deref())
        .map_err(|e| Error::Usage(e.to_string()))?;
    broker.rpc_timeout = args.rpc_timeout.map(crate::seconds);
    let puppetdb = puppetdb_settings(&args)?;
    let interrupt = Interrupt::new();
    let opts = RunOptions {
        broker,
        puppetdb,
        values,
        loglevel: args.loglevel.as_deref().and_then(Level::from_name),
        dry_run: args.dry_run,
        json: args.json,
        interrupt: interrupt.clone(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(async {
        let listener = tokio::spawn(listen(interrupt));
        // Let the listener install its handlers before the run starts.
        tokio::task::yield_now().await;
        let outcome = execute(pb, opts).await;
        listener.abort();
        outcome
    });
    let report = &outcome.report;
    let say = |line: String| {
        if args.json {
            let _ = writeln!(std::io::stderr(), "{line}");
        } else {
            println!("{line}");
        }
    };
    say(String::new());
    say(format!(
        "Playbook {} version {}",
        report.playbook.name, report.playbook.version
    ));
    say(format!(
        "Started: {}",
        report.report.timestamp.format("%Y-%m-%d %H:%M:%S UTC")
    ));
    say(format!("Overall outcome: {}", report.report.outcome.name()));
    if let Some(e) = &report.report.playbook_error {
        say(format!("Error: {e}"));
    }
    say(format!("Tasks Ran: {}", report.metrics.task_count));
    say(format!("Run Time: {:.2} seconds", report.metrics.run_time));
    if let Some(path) = &args.report {
        let text = report.to_yaml().map_err(Error::Output)?;
        std::fs::write(path, text).map_err(|e| {
            Error::Output(format!("Could not write report {}: {e}", path.display()))
        })?;
        say(format!("Report saved to {}", path.display()));
    }
    if args.json {
        let text =
            serde_json::to_string_pretty(report).map_err(|e| Error::Output(e.to_string()))?;
        println!("{text}");
    }
    Ok(match (outcome.interrupted, outcome.success) {
        (Some(signal), _) => signal.exit_code(),
        (None, true) => EXIT_SUCCESS,
        (None, false) => EXIT_FAILURE,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_playbook_anywhere_after_run() {
        let args: Vec<OsString> = ["playbook", "run", "--port", "4300", "x.yaml"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(find_run_file(&args), Some(PathBuf::from("x.yaml")));
        let args: Vec<OsString> = ["playbook", "run", "--report", "r", "pb"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(find_run_file(&args), Some(PathBuf::from("pb")));
    }

    #[test]
    fn values_convert_to_their_types() {
        assert_eq!(parse_value(InputType::Integer, "42"), Ok(Value::from(42)));
        assert!(parse_value(InputType::Integer, "4x").is_err());
        assert_eq!(parse_value(InputType::Numeric, "1.5"), Ok(Value::from(1.5)));
        assert_eq!(parse_value(InputType::String, "a"), Ok(Value::from("a")));
    }
}
