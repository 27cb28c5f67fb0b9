use clap::Parser;

/// Not built yet: see the project's issues.
#[derive(Parser)]
#[command(version)]
struct Cli {}

fn main() {
    Cli::parse();
    eprintln!("error: `healthcheck` is not implemented yet");
    std::process::exit(2);
}
