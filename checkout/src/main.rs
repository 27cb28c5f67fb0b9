use clap::Parser;
use plan::report::{say, Fault, WriteError};
use plan::Env;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// What is deployed: a clean copy of APP_DIR as a push would send it, outside the
/// developer's working tree.
///
/// In a git work tree, the committed tree (HEAD, with the submodules at their recorded
/// commits); uncommitted changes are left out, and said. With --working-tree, the files as
/// they are (tracked and untracked, but what .gitignore ignores and .venv). Outside a git work
/// tree, the directory as it is (but .venv). Prints what was copied as JSON on stdout, for
/// `detect --source FILE`; nothing in APP_DIR is written.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// The application's repository, or a directory of it.
    #[arg(default_value = ".")]
    app_dir: PathBuf,
    /// Where the copy goes: a new or empty directory.
    #[arg(long, value_name = "DIR")]
    into: PathBuf,
    /// Deploy the files as they are, uncommitted changes included (for the edit-and-retry
    /// loop), instead of the commit.
    #[arg(long)]
    working_tree: bool,
}

fn main() -> ExitCode {
    plan::cli::main::<Cli>(|_| None, run)
}

fn run(cli: &Cli, env: &Env) -> Result<ExitCode, Fault> {
    let source = checkout::checkout(&cli.app_dir, &cli.into, cli.working_tree)?;
    for line in checkout::describe(&source) {
        say("checkout", line, env);
    }
    let json = serde_json::to_string(&source).expect("a source serializes");
    writeln!(std::io::stdout(), "{json}").map_err(WriteError)?;
    Ok(ExitCode::SUCCESS)
}
