use std::process::ExitCode;

fn main() -> ExitCode {
    plan::cli::main::<kept::Cli>(|_| None, kept::run)
}
