//! `scripts/deploy` end to end, stopping: INT, TERM and HUP in every phase of a deployment,
//! and SIGKILL of deploy itself, leave no process behind.

mod harness;

use harness::*;
use std::time::Duration;

#[test]
fn sigint_stops_a_chain_of_varnish_and_the_app() {
    let mut deployment = Setup::new("hello").start_with(with_vcl);
    deployment.deployed();
    deployment.guard.signal(nix::sys::signal::Signal::SIGINT);
    assert!(deployment.exit(Duration::from_secs(30)).success());
    assert!(deployment
        .output()
        .contains("==> stopping (signal received)"));
    let output = deployment.output();
    assert!(!output.contains("Killed"), "no job noise: {output}");
    deployment.nothing_left();
}

#[test]
fn killing_deploy_outright_leaves_no_orphan() {
    // A daemon the succeeded hook leaves, in a session of its own: in no group deploy knows.
    let mut deployment = Setup::new("hello")
        .var(
            "CC_RUN_SUCCEEDED_HOOK",
            "setsid sleep 300 >/dev/null 2>&1 &",
        )
        .start_with(with_vcl);
    deployment.deployed();
    assert!(
        testkit::wait_until(Duration::from_secs(10), || marked_processes(
            &deployment.mark
        )
        .iter()
        .any(|&p| process::command_line(p).contains("sleep 300"))),
        "the daemon started"
    );
    let running = marked_processes(&deployment.mark);
    assert!(
        running
            .iter()
            .any(|&p| process::command_line(p).contains("varnishd"))
            && running
                .iter()
                .any(|&p| process::command_line(p).contains("app.py")),
        "varnishd and the app are running: {running:?}"
    );
    deployment.guard.signal(nix::sys::signal::Signal::SIGKILL);
    deployment.exit(Duration::from_secs(10));
    deployment.nothing_left();
}

/// The phases of a deployment, each held open by something that waits, and the line that
/// says it has begun.
const PHASES: [(&str, &str, &str, &str); 4] = [
    (
        "build",
        "CC_PRE_BUILD_HOOK",
        "echo in-build-hook; sleep 300",
        "in-build-hook",
    ),
    (
        "pre-run hook",
        "CC_PRE_RUN_HOOK",
        "echo in-pre-run-hook; sleep 300",
        "in-pre-run-hook",
    ),
    // The app never listens: the health check waits.
    (
        "health wait",
        "CC_RUN_COMMAND",
        "echo app-started; sleep 300",
        "healthcheck: waiting for port",
    ),
    ("supervision", "CC_PRE_RUN_HOOK", "true", "==> deployed"),
];

/// TERM, INT and HUP stop a deployment in `phase` within seconds (exit 0), and SIGKILL
/// leaves nothing either: every process it started is gone within 2 s.
fn signals_stop_every_process_in(phase: usize) {
    use nix::sys::signal::Signal;
    let (name, variable, value, started) = PHASES[phase];
    for signal in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGKILL,
    ] {
        let mut deployment = Setup::new("hello")
            .var(variable, value)
            .start_with(with_vcl);
        assert!(
            deployment.wait_for(started, Duration::from_secs(90)),
            "{name}: never reached:\n{}",
            deployment.output()
        );
        eprintln!("{name}: sending {signal}");
        deployment.guard.signal(signal);
        // Within the deadline: a signal deferred until the phase ends (the `sleep 300`)
        // would miss it.
        let status = deployment.exit(Duration::from_secs(10));
        if signal != Signal::SIGKILL {
            assert_eq!(
                status.code(),
                Some(0),
                "{name}, {signal}:\n{}",
                deployment.output()
            );
        }
        deployment.nothing_left();
    }
}

#[test]
fn signals_stop_a_deployment_during_the_build() {
    signals_stop_every_process_in(0);
}

#[test]
fn signals_stop_a_deployment_during_the_pre_run_hook() {
    signals_stop_every_process_in(1);
}

#[test]
fn signals_stop_a_deployment_during_the_health_wait() {
    signals_stop_every_process_in(2);
}

#[test]
fn signals_stop_a_deployment_during_supervision() {
    signals_stop_every_process_in(3);
}
