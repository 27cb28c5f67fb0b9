use std::process::ExitCode;

fn main() -> ExitCode {
    plan::cli::main::<control::Cli>(|_| None, control::run)
}
