use std::process::ExitCode;
use supervise::Options;

fn main() -> ExitCode {
    // The watchdog is this program started again by itself (see `watchdog`): not a user's
    // command, so not in `--help`.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--watchdog") {
        let ms = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10_000);
        return ExitCode::from(supervise::watchdog::run(std::time::Duration::from_millis(
            ms,
        )));
    }
    plan::cli::main::<Options>(|o| Some(&o.env), supervise::deploy)
}
