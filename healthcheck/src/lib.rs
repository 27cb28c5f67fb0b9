//! The deployment health check: wait until the app (or the first hop) listens publicly on
//! the public port, GET every configured path, and give the verdict in the platform's words.

pub mod listen;

use listen::{listeners, Listener};
use plan::{Plan, DEFAULT_APP_PORT};
use serde::Serialize;
use std::time::{Duration, Instant};

/// What to check.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub host: String,
    /// The public port: where the platform sends the health check.
    pub port: u16,
    /// The ports behind the public one that must listen too: each later hop of the chain,
    /// and the app's port when a middleware sits in front of it.
    pub inner_ports: Vec<InnerPort>,
    pub paths: Vec<String>,
    /// The default `/` check (nothing configured) passes on any answer below 500.
    pub lenient: bool,
    pub timeout: Duration,
    pub request_timeout: Duration,
}

impl Check {
    /// The check a plan asks for, on the public port. With `block`, that is the blocking
    /// service: it answers the default `/` itself and passes configured paths to the app.
    pub fn from_plan(plan: &Plan, timeout: Duration, request_timeout: Duration) -> Self {
        let proxied = plan.ports.app != plan.ports.public;
        let hops = plan
            .hops
            .iter()
            .flatten()
            .filter(|h| h.listen != plan.ports.public);
        let mut inner_ports: Vec<InnerPort> = hops
            .map(|h| InnerPort {
                port: h.listen,
                hop: Some(h.name.clone()),
            })
            .collect();
        if proxied {
            inner_ports.push(InnerPort {
                port: plan.ports.app,
                hop: None,
            });
        }
        Check {
            host: "127.0.0.1".into(),
            port: plan.ports.public,
            inner_ports,
            paths: plan.health_check.paths.clone(),
            lenient: plan.health_check.is_default(),
            timeout,
            request_timeout,
        }
    }
}

/// A port behind the public one, and what must listen there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InnerPort {
    pub port: u16,
    /// `None` for the app; the hop's name otherwise.
    pub hop: Option<String>,
}

/// The answer to one GET.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Probe {
    pub path: String,
    /// `None` when no HTTP answer came.
    pub status: Option<u16>,
    /// Why no answer came (timeout, connection reset, ...).
    pub error: Option<String>,
    pub duration_ms: u64,
    pub passed: bool,
}

impl Probe {
    /// The status, or the reason in its place, as the verdict prints it.
    pub fn outcome(&self) -> String {
        match (self.status, &self.error) {
            (Some(status), _) => status.to_string(),
            (None, Some(error)) => error.clone(),
            (None, None) => "no answer".into(),
        }
    }
}

/// The whole result, as `--json` prints it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub healthy: bool,
    pub listening: bool,
    pub port: u16,
    pub probes: Vec<Probe>,
    /// When nothing listened in time: the platform's line, then what listens instead.
    pub diagnosis: Vec<String>,
    pub waited_ms: u64,
}

/// Runs the check: waits for the ports, then probes every path at once.
pub fn run(check: &Check) -> Verdict {
    let started = Instant::now();
    let listening = wait_until_listening(check);
    let waited_ms = started.elapsed().as_millis() as u64;
    if let Err(diagnosis) = listening {
        return Verdict {
            healthy: false,
            listening: false,
            port: check.port,
            probes: Vec::new(),
            diagnosis,
            waited_ms,
        };
    }
    let probes = probe_all(check);
    Verdict {
        healthy: probes.iter().all(|p| p.passed),
        listening: true,
        port: check.port,
        probes,
        diagnosis: Vec::new(),
        waited_ms,
    }
}

/// Polls every 5 ms (reading the socket table is cheap) until the ports listen as they must,
/// or the deadline passes; then says what listens instead.
fn wait_until_listening(check: &Check) -> Result<(), Vec<String>> {
    let deadline = Instant::now() + check.timeout;
    let local = is_local(&check.host);
    loop {
        let ready = match (local, listeners()) {
            (true, Some(table)) => ports_ready(check, &table),
            // Elsewhere (or without /proc), a connection is all we can observe.
            _ => std::net::TcpStream::connect((check.host.as_str(), check.port)).is_ok(),
        };
        if ready {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(diagnose(check, &listeners().unwrap_or_default()));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn is_local(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn ports_ready(check: &Check, table: &[Listener]) -> bool {
    let public = table.iter().any(|l| l.port == check.port && l.is_public());
    let inner = check
        .inner_ports
        .iter()
        .all(|inner| table.iter().any(|l| l.port == inner.port));
    public && inner
}

/// The platform's phrase, then what this machine shows instead.
pub fn diagnose(check: &Check, table: &[Listener]) -> Vec<String> {
    let on = |port: u16| table.iter().filter(move |l| l.port == port);
    let port = check.port;
    let mut lines = Vec::new();
    let public_ok = on(port).any(|l| l.is_public());
    if !public_ok {
        lines.push(format!("Your application is not listening on {port}"));
        if let Some(local) = on(port).next() {
            lines.push("Your application is listening on localhost instead of publicly".into());
            lines.push(format!(
                "It listens on {}:{port}; it must listen on 0.0.0.0:{port} (bind to 0.0.0.0, not 127.0.0.1 or localhost).",
                local.addr
            ));
        } else if check.inner_ports.is_empty() && on(DEFAULT_APP_PORT).next().is_some() {
            lines.push(format!(
                "Something listens on {DEFAULT_APP_PORT} instead: with no middleware the app must listen on {port} (the PORT it is given), not {DEFAULT_APP_PORT} as in a legacy deployment."
            ));
        } else {
            lines.push(format!("Nothing listens on port {port}."));
        }
    }
    for inner in check
        .inner_ports
        .iter()
        .filter(|i| on(i.port).next().is_none())
    {
        let missing = inner.port;
        lines.push(format!(
            "Some software are not listening as expected: {missing}"
        ));
        lines.push(match &inner.hop {
            None => format!("With a middleware in front, the app must listen on {missing} (the PORT it is given), not {port}."),
            Some(hop) => format!("The middleware {hop} should listen on {missing}: see its output above."),
        });
    }
    lines
}

fn probe_all(check: &Check) -> Vec<Probe> {
    let agent = ureq::AgentBuilder::new()
        .redirects(0)
        .timeout(check.request_timeout)
        .build();
    std::thread::scope(|scope| {
        let handles: Vec<_> = check
            .paths
            .iter()
            .map(|path| {
                let agent = &agent;
                scope.spawn(move || probe(agent, check, path))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a probe panicked"))
            .collect()
    })
}

fn probe(agent: &ureq::Agent, check: &Check, path: &str) -> Probe {
    let url = format!("http://{}:{}{}", check.host, check.port, path);
    let started = Instant::now();
    let (status, error) = match agent.get(&url).call() {
        Ok(response) => (Some(response.status()), None),
        Err(ureq::Error::Status(status, _)) => (Some(status), None),
        Err(ureq::Error::Transport(t)) => (None, Some(transport_reason(&t))),
    };
    let passed = match status {
        Some(s) if check.lenient => s < 500,
        Some(s) => (200..300).contains(&s),
        None => false,
    };
    Probe {
        path: path.to_string(),
        status,
        error,
        duration_ms: started.elapsed().as_millis() as u64,
        passed,
    }
}

fn transport_reason(t: &ureq::Transport) -> String {
    match t.kind() {
        ureq::ErrorKind::Io if t.to_string().contains("timed out") => {
            "no answer in time (timed out)".into()
        }
        _ => t
            .to_string()
            .split(": ")
            .last()
            .unwrap_or("no answer")
            .to_string(),
    }
}

/// The verdict in the platform's words.
pub fn render(verdict: &Verdict) -> String {
    if !verdict.listening {
        return verdict.diagnosis.iter().map(|l| format!("{l}\n")).collect();
    }
    let mut out = String::new();
    for probe in &verdict.probes {
        out.push_str(&format!(
            "Response from GET {} is {}\n",
            probe.path,
            probe.outcome()
        ));
    }
    if !verdict.healthy {
        out.push_str("Health check failed:\n");
        for probe in verdict.probes.iter().filter(|p| !p.passed) {
            out.push_str(&format!(
                "- GET {} returned {}.\n",
                probe.path,
                probe.outcome()
            ));
        }
        out.push_str("If the deployment fails after this message, please update your configuration and redeploy.\n");
    }
    out
}

/// Durations as people write them: `60s`, `500ms`, `2m`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (e.g. `60s`, `500ms`, `2m`)"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        _ => return Err(format!("`{text}`: unknown unit `{unit}` (use ms, s or m)")),
    };
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn probe(path: &str, status: Option<u16>, passed: bool) -> Probe {
        Probe {
            path: path.into(),
            status,
            error: status.is_none().then(|| "connection reset".to_string()),
            duration_ms: 1,
            passed,
        }
    }

    #[test]
    fn the_seed_example_renders_exactly() {
        let verdict = Verdict {
            healthy: false,
            listening: true,
            port: 8080,
            probes: vec![
                probe("/my/awesome/path", Some(200), true),
                probe("/my/other/path", Some(500), false),
            ],
            diagnosis: vec![],
            waited_ms: 0,
        };
        assert_eq!(
            render(&verdict),
            "Response from GET /my/awesome/path is 200
Response from GET /my/other/path is 500
Health check failed:
- GET /my/other/path returned 500.
If the deployment fails after this message, please update your configuration and redeploy.
"
        );
    }

    #[test]
    fn a_missing_answer_prints_the_reason_in_place_of_the_status() {
        let verdict = Verdict {
            healthy: false,
            listening: true,
            port: 8080,
            probes: vec![probe("/", None, false)],
            diagnosis: vec![],
            waited_ms: 0,
        };
        assert!(render(&verdict).contains("- GET / returned connection reset.\n"));
    }

    fn check(app_port: Option<u16>) -> Check {
        Check {
            host: "127.0.0.1".into(),
            port: 8080,
            inner_ports: app_port
                .map(|port| InnerPort { port, hop: None })
                .into_iter()
                .collect(),
            paths: vec!["/".into()],
            lenient: true,
            timeout: Duration::ZERO,
            request_timeout: Duration::ZERO,
        }
    }

    fn l(addr: [u8; 4], port: u16) -> Listener {
        Listener {
            addr: Ipv4Addr::from(addr).into(),
            port,
        }
    }

    #[test]
    fn diagnoses() {
        assert_eq!(
            diagnose(&check(None), &[l([127, 0, 0, 1], 8080)])[..2],
            [
                "Your application is not listening on 8080",
                "Your application is listening on localhost instead of publicly"
            ]
        );
        assert!(diagnose(&check(None), &[l([0, 0, 0, 0], 9000)])[1]
            .starts_with("Something listens on 9000 instead"));
        assert_eq!(
            diagnose(&check(None), &[])[1],
            "Nothing listens on port 8080."
        );
        let proxied = diagnose(&check(Some(9000)), &[l([0, 0, 0, 0], 8080)]);
        assert_eq!(
            proxied[0],
            "Some software are not listening as expected: 9000"
        );
        assert!(diagnose(
            &check(Some(9000)),
            &[l([0, 0, 0, 0], 8080), l([127, 0, 0, 1], 9000)]
        )
        .is_empty());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5h").is_err());
    }
}
