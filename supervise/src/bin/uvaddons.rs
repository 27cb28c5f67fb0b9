//! `uvaddons` (`uvdeploy addons`): lists or removes an app's local add-on data.
fn main() -> std::process::ExitCode {
    plan::cli::main::<supervise::addon::AddonsOptions>(|_| None, supervise::addon::addons)
}
