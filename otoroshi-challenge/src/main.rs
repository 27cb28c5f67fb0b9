use clap::Parser;

/// Not built yet: see the project's issues.
#[derive(Parser)]
#[command(version)]
struct Cli {}

fn main() {
    Cli::parse();
    eprintln!("error: `otoroshi-challenge` is not implemented yet");
    std::process::exit(2);
}
