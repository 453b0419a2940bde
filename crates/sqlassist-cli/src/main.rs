//! The `sqlassist` command: an operator's view of the databases an application's settings
//! describe. A thin layer over the `sqlassist` library: argument parsing, output and exit
//! codes. It builds the engines from the application's own settings file without opening
//! the decision log or running recovery: it acts only when a command asks it to.
//!
//! Exit codes: 0 clean, 1 in-doubt transactions present, 2 operator needed, 3 error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use sqlassist::{PrintOptions, Registry, Schema, Settings};

mod branches;
mod check;

/// Exit code: nothing to report.
const CLEAN: u8 = 0;
/// Exit code: in-doubt transactions are present (recovery will finish them).
const IN_DOUBT: u8 = 1;
/// Exit code: an operator should look (a failed check, an unmapped type).
const OPERATOR: u8 = 2;
/// Exit code: the command itself failed (bad settings, an engine that cannot be read).
const ERROR: u8 = 3;

#[derive(Parser, Debug)]
#[command(
    name = "sqlassist",
    version,
    about = "Inspect the databases an application's sqlassist settings describe",
    after_help = "Exit codes: 0 clean, 1 in-doubt transactions present, 2 operator needed, 3 error."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the application's settings are.
#[derive(Args, Debug)]
struct SettingsArgs {
    /// The application's settings file: INI (a section, `--section`) or TOML (`.toml`).
    settings: PathBuf,
    /// The INI section holding the settings.
    #[arg(long, default_value = "app:main")]
    section: String,
    /// More engine prefixes the application names (besides `sqlalchemy.` and
    /// `sqlalchemy_<name>.`), as in `Registry::from_settings_with_prefixes`.
    #[arg(long = "prefix", value_name = "PREFIX")]
    prefixes: Vec<String>,
}

impl SettingsArgs {
    fn load(&self) -> sqlassist::Result<(Settings, Registry)> {
        let settings = load_settings(&self.settings, &self.section)?;
        let prefixes: Vec<&str> = self.prefixes.iter().map(String::as_str).collect();
        let registry = Registry::from_settings_inert(&settings, &prefixes)?;
        Ok((settings, registry))
    }
}

fn load_settings(path: &Path, section: &str) -> sqlassist::Result<Settings> {
    if path.extension().is_some_and(|e| e == "toml") {
        Settings::from_toml_file(path)
    } else {
        Settings::from_ini_file(path, section)
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The live schema of an engine.
    Schema {
        #[command(subcommand)]
        command: SchemaCommand,
    },
    /// Prepared branches of the managed engines.
    InDoubt {
        #[command(subcommand)]
        command: InDoubtCommand,
    },
    /// One recovery pass now, printing each action (needs the decision log's lock: the
    /// application must be stopped); `--dry-run` prints what a pass would do, lock-free.
    Recover {
        #[command(flatten)]
        settings: SettingsArgs,
        /// Act on nothing: list each branch and the action a pass would take.
        #[arg(long)]
        dry_run: bool,
        /// One JSON object on stdout instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Commits one prepared branch by hand (recorded in the log directory's manual.log).
    Commit(FinishArgs),
    /// Rolls back one prepared branch by hand; refused where a commit is logged.
    Rollback(FinishArgs),
    /// The file decision log, read without its lock.
    Log {
        #[command(subcommand)]
        command: LogCommand,
    },
    /// Checks every engine, the node id and the decision log: reachable, server version,
    /// prepared transactions where managed, read-only engines refusing writes, durable
    /// settings. Exit 0 when every check passes, 2 when one warns or fails.
    Check {
        #[command(flatten)]
        settings: SettingsArgs,
        /// One JSON object on stdout instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// A manual commit or rollback.
#[derive(Args, Debug)]
struct FinishArgs {
    #[command(flatten)]
    settings: SettingsArgs,
    /// The branch as `in-doubt list` shows it (a PostgreSQL gid, a MariaDB/MySQL xid).
    gid: String,
    /// Act even where refused: a rollback where a commit is logged, or while the
    /// application holds the decision log.
    #[arg(long)]
    force: bool,
    /// One JSON object on stdout instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum InDoubtCommand {
    /// Our prepared branches per engine: age, node, incarnation, logged decision, and the
    /// action recovery would take. Exit 1 when any is present.
    List {
        #[command(flatten)]
        settings: SettingsArgs,
        /// Also other nodes' and foreign prepared branches (left alone by recovery).
        #[arg(long)]
        all: bool,
        /// One JSON object on stdout instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum LogCommand {
    /// Checks every record batch: checksums, a torn tail (a crash mid-write, harmless)
    /// against corruption (exit 2).
    Verify(LogArgs),
    /// Prints the record batches and the open decisions.
    Dump(LogArgs),
}

/// Which decision log.
#[derive(Args, Debug)]
struct LogArgs {
    /// The application's settings file (its `sqlassist.decision_log`), or the log
    /// directory itself.
    path: PathBuf,
    /// The INI section holding the settings.
    #[arg(long, default_value = "app:main")]
    section: String,
    /// One JSON object on stdout instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum SchemaCommand {
    /// Prints Diesel `table!`, `joinable!` and `allow_tables_to_appear_in_same_query!`
    /// code for the engine's live schema.
    Print {
        #[command(flatten)]
        settings: SettingsArgs,
        /// The engine, by its name in the settings (`writer` for `sqlalchemy_writer.`).
        #[arg(long)]
        engine: String,
        /// Only these tables (comma-separated; `schema.table` for another schema).
        #[arg(long, value_delimiter = ',')]
        tables: Vec<String>,
        /// Also print `declared_tables()` for `sqlassist::check_drift`.
        #[arg(long)]
        declared: bool,
        /// One JSON object (`code`, `unmapped`) on stdout instead of the code.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Schema {
            command:
                SchemaCommand::Print {
                    settings,
                    engine,
                    tables,
                    declared,
                    json,
                },
        } => schema_print(&settings, &engine, &tables, declared, json),
        Command::Check { settings, json } => check::run(&settings, json),
        Command::InDoubt {
            command:
                InDoubtCommand::List {
                    settings,
                    all,
                    json,
                },
        } => branches::list(&settings, all, json),
        Command::Recover {
            settings,
            dry_run: true,
            json,
        } => branches::list(&settings, false, json),
        Command::Recover { settings, json, .. } => branches::recover(&settings, json),
        Command::Commit(a) => branches::finish(&a.settings, &a.gid, true, a.force, a.json),
        Command::Rollback(a) => branches::finish(&a.settings, &a.gid, false, a.force, a.json),
        Command::Log { command } => {
            let (args, dump) = match &command {
                LogCommand::Verify(a) => (a, false),
                LogCommand::Dump(a) => (a, true),
            };
            match log_dir(args) {
                Ok(dir) => branches::log(&dir, dump, args.json),
                Err(code) => code,
            }
        }
    };
    ExitCode::from(code)
}

/// The log directory: the path itself, or the `sqlassist.decision_log` of a settings file.
fn log_dir(args: &LogArgs) -> Result<PathBuf, u8> {
    if args.path.is_dir() {
        return Ok(args.path.clone());
    }
    let settings = load_settings(&args.path, &args.section)
        .map_err(|e| fail("cannot read the settings", &e))?;
    match Registry::decision_log_location(&settings) {
        Some(sqlassist::DecisionLogLocation::Directory(dir)) => Ok(dir),
        Some(sqlassist::DecisionLogLocation::Engine(name)) => {
            eprintln!("sqlassist: the decision log is a table of engine `{name}`, not a directory: see `sqlassist in-doubt list` and `sqlassist check`");
            Err(ERROR)
        }
        Some(_) | None => {
            eprintln!("sqlassist: the settings set no `sqlassist.decision_log`");
            Err(ERROR)
        }
    }
}

/// Prints an error on stderr and gives the error exit code.
fn fail(what: &str, error: &dyn std::fmt::Display) -> u8 {
    eprintln!("sqlassist: {what}: {error}");
    ERROR
}

fn schema_print(
    args: &SettingsArgs,
    engine: &str,
    tables: &[String],
    declared: bool,
    json: bool,
) -> u8 {
    let (_, registry) = match args.load() {
        Ok(loaded) => loaded,
        Err(e) => return fail("cannot read the settings", &e),
    };
    let engine = match registry.engine(engine) {
        Ok(engine) => engine,
        Err(e) => return fail("no such engine", &e),
    };
    eprintln!("reflecting {}", engine.url().redacted());
    let schema = if tables.is_empty() {
        Schema::reflect(engine)
    } else {
        let names: Vec<&str> = tables.iter().map(String::as_str).collect();
        Schema::reflect_tables(engine, &names)
    };
    let schema = match schema {
        Ok(schema) => schema,
        Err(e) => return fail("cannot reflect the schema", &e),
    };
    let printed = schema.to_diesel(PrintOptions::new().declared_tables(declared));
    for unmapped in &printed.unmapped {
        eprintln!("warning: {unmapped}");
    }
    if json {
        let unmapped: Vec<serde_json::Value> = printed
            .unmapped
            .iter()
            .map(|u| {
                serde_json::json!({
                    "table": u.table,
                    "column": u.column,
                    "type": u.type_name,
                    "table_skipped": u.table_skipped,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({ "code": printed.code, "unmapped": unmapped })
        );
    } else {
        print!("{}", printed.code);
    }
    if printed.unmapped.is_empty() {
        CLEAN
    } else {
        OPERATOR
    }
}
