//! The workers' restarts, as the platform's systemd units do them: `CC_WORKER_RESTART`
//! (`Restart=`), `CC_WORKER_RESTART_DELAY` (`RestartSec=`) and systemd's default start limit
//! (5 starts within 10 s, then the unit is given up). Decisions only: the supervisor's loop
//! starts the processes, and waits for the next restart as a deadline, never by sleeping.

use plan::worker::{Restart, START_LIMIT_BURST, START_LIMIT_INTERVAL};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// One worker of the plan, across its runs.
#[derive(Debug)]
pub struct Unit {
    pub name: String,
    pub restart: Restart,
    pub delay: Duration,
    /// The process of its current run (an index of `Children::procs`), while it runs.
    pub running: Option<usize>,
    /// When it is to be started again, after an end.
    pub restart_at: Option<Instant>,
    /// When it was started, the last [`START_LIMIT_BURST`] times.
    starts: VecDeque<Instant>,
    pub given_up: bool,
}

/// What follows a worker's end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterEnd {
    /// Started again at this instant.
    RestartAt(Instant),
    /// Not restarted: the policy says so.
    Done,
}

/// Whether a worker due now may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Go,
    /// Past the start limit: given up, said once.
    GiveUp,
}

impl Unit {
    pub fn new(worker: &plan::Worker) -> Self {
        Unit {
            name: worker.name.clone(),
            restart: worker.restart,
            delay: Duration::from_millis(worker.restart_delay_ms),
            running: None,
            restart_at: None,
            starts: VecDeque::new(),
            given_up: false,
        }
    }

    /// Whether a start now is allowed: systemd refuses a start when the unit started
    /// [`START_LIMIT_BURST`] times within the last [`START_LIMIT_INTERVAL`].
    pub fn may_start(&mut self, now: Instant) -> Start {
        while self
            .starts
            .front()
            .is_some_and(|&t| now.duration_since(t) >= START_LIMIT_INTERVAL)
        {
            self.starts.pop_front();
        }
        if self.starts.len() >= START_LIMIT_BURST {
            self.given_up = true;
            self.restart_at = None;
            return Start::GiveUp;
        }
        Start::Go
    }

    /// Records a start, as process `index`.
    pub fn started(&mut self, index: usize, now: Instant) {
        self.running = Some(index);
        self.restart_at = None;
        self.starts.push_back(now);
        while self.starts.len() > START_LIMIT_BURST {
            self.starts.pop_front();
        }
    }

    /// Its process ended with `status` at `now`.
    pub fn ended(&mut self, status: i32, now: Instant) -> AfterEnd {
        self.running = None;
        if self.restart.restarts_after(status) {
            let at = now + self.delay;
            self.restart_at = Some(at);
            AfterEnd::RestartAt(at)
        } else {
            AfterEnd::Done
        }
    }
}

/// The earliest restart due among `units`.
pub fn next_due(units: &[Unit]) -> Option<Instant> {
    units.iter().filter_map(|u| u.restart_at).min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(restart: Restart, delay_ms: u64) -> Unit {
        Unit::new(&plan::Worker {
            name: "worker-0".into(),
            source: "CC_WORKER_COMMAND".into(),
            command: "w".into(),
            argv: None,
            restart,
            restart_delay_ms: delay_ms,
        })
    }

    #[test]
    fn a_failing_worker_is_restarted_after_the_delay_then_given_up_at_the_start_limit() {
        let mut u = unit(Restart::OnFailure, 1000);
        let t0 = Instant::now();
        let mut now = t0;
        for run in 0..5 {
            assert_eq!(u.may_start(now), Start::Go, "run {run}");
            u.started(run, now);
            assert_eq!(
                u.ended(1, now),
                AfterEnd::RestartAt(now + Duration::from_secs(1))
            );
            now += Duration::from_secs(1);
        }
        // The sixth start, 5 s after the first: within 10 s.
        assert_eq!(u.may_start(now), Start::GiveUp);
        assert!(u.given_up && u.restart_at.is_none());
    }

    #[test]
    fn starts_spread_over_more_than_ten_seconds_go_on() {
        let mut u = unit(Restart::Always, 3000);
        let mut now = Instant::now();
        for run in 0..20 {
            assert_eq!(u.may_start(now), Start::Go, "run {run}");
            u.started(run, now);
            assert!(matches!(u.ended(0, now), AfterEnd::RestartAt(_)));
            now += Duration::from_secs(3);
        }
    }

    #[test]
    fn policies_decide_what_follows_an_end() {
        let now = Instant::now();
        let mut u = unit(Restart::OnFailure, 0);
        assert_eq!(u.ended(0, now), AfterEnd::Done);
        assert_eq!(
            u.ended(143, now),
            AfterEnd::Done,
            "TERM is a clean end for systemd"
        );
        assert_eq!(u.ended(137, now), AfterEnd::RestartAt(now));
        let mut u = unit(Restart::No, 0);
        assert_eq!(u.ended(1, now), AfterEnd::Done);
        let mut u = unit(Restart::Always, 500);
        assert_eq!(
            u.ended(0, now),
            AfterEnd::RestartAt(now + Duration::from_millis(500))
        );
        assert_eq!(
            next_due(&[u, unit(Restart::No, 0)]),
            Some(now + Duration::from_millis(500))
        );
    }
}
