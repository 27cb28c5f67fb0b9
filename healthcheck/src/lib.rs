//! The deployment health check: wait until the app (or the first hop) listens publicly on
//! the public port, GET every configured path, and give the verdict in the platform's words.
//!
//! With an Otoroshi challenge in the chain, each request carries a token signed as Otoroshi
//! signs it, and only an answer that comes back signed by the challenge is the app's. With
//! owners (the deployment's PIDs), only an answer from a port their processes listen on is.

use otoroshi_challenge::token::{new_state, Otoroshi, STATE_TTL};
use plan::{Middleware, Plan};
use process::{listeners, listening_sockets_of, Listener};
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
    /// The whole check's deadline: the wait for the ports and the requests together.
    pub timeout: Duration,
    pub request_timeout: Duration,
    /// The app's process (its launcher's PID), when known: the diagnosis then names the
    /// ports the app's own process tree listens on.
    pub app_pid: Option<i32>,
    /// Legacy mode: Nginx answers on the public port even when the app server is down, so
    /// the check still asks it, and says what it answered in the platform's legacy words.
    pub legacy: bool,
    /// The variable that holds the secret of the Otoroshi challenge in the chain, if any:
    /// the requests must carry a token signed with it.
    pub otoroshi_secret_env: Option<String>,
    /// The deployment's processes: when not empty, an answer counts only if every socket
    /// listening on the checked ports belongs to one of them or their descendants.
    pub owners: Vec<i32>,
}

impl Check {
    /// The check a plan asks for, on the public port. With `block`, that is the blocking
    /// service: it answers the default `/` itself and passes configured paths to the app.
    pub fn from_plan(plan: &Plan, timeout: Duration, request_timeout: Duration) -> Self {
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
        if plan.ports.app != plan.ports.public {
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
            app_pid: None,
            legacy: plan.mode == plan::Mode::Legacy,
            otoroshi_secret_env: plan.request_flow.middlewares.iter().find_map(|m| match m {
                Middleware::OtoroshiChallenge { secret_env } => Some(secret_env.clone()),
                _ => None,
            }),
            owners: Vec::new(),
        }
    }

    /// Where the app must listen: the public port, or the port behind the chain.
    fn app_port(&self) -> u16 {
        self.inner_ports
            .iter()
            .find(|i| i.hop.is_none())
            .map_or(self.port, |i| i.port)
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
            (Some(status), Some(error)) => format!("{status} ({error})"),
            (Some(status), None) => status.to_string(),
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
    /// Rendered in legacy mode's words (`GET http://HOST:PORT/ returned 502!`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub legacy: bool,
    #[serde(skip)]
    pub host: String,
}

/// Runs the check: waits for the ports, then probes every path at once, all within
/// `timeout`. `otoroshi` signs the requests' tokens when the chain has a challenge.
pub fn run(check: &Check, otoroshi: Option<&Otoroshi>) -> Verdict {
    let started = Instant::now();
    let deadline = started + check.timeout;
    let listening = wait_until_listening(check, deadline);
    let waited_ms = started.elapsed().as_millis() as u64;
    let unhealthy = |probes: Vec<Probe>, diagnosis: Vec<String>| Verdict {
        healthy: false,
        listening: false,
        port: check.port,
        probes,
        diagnosis,
        waited_ms,
        legacy: check.legacy,
        host: check.host.clone(),
    };
    // Whoever listens must be the deployment, before any answer is asked for (a wait that
    // ended listening checked it on its last look).
    if listening.is_err() {
        if let Err(diagnosis) = owned(check) {
            return unhealthy(Vec::new(), diagnosis);
        }
    }
    if let Err(diagnosis) = listening {
        // Nginx is up, the app server is not: ask Nginx anyway, as the platform does (it
        // answers 502), with a moment of its own past the deadline for that one answer.
        let probes = if check.legacy && accepts(&check.host, check.port) {
            probe_all(check, otoroshi, Instant::now() + check.request_timeout)
        } else {
            Vec::new()
        };
        return unhealthy(probes, diagnosis);
    }
    let probes = probe_all(check, otoroshi, deadline);
    // The port may have changed hands while the requests were answered.
    if let Err(diagnosis) = owned(check) {
        return unhealthy(Vec::new(), diagnosis);
    }
    Verdict {
        healthy: probes.iter().all(|p| p.passed),
        listening: true,
        port: check.port,
        probes,
        diagnosis: Vec::new(),
        waited_ms,
        legacy: check.legacy,
        host: check.host.clone(),
    }
}

/// Waits until the ports listen as they must, or the deadline passes; then says what
/// listens instead. A connect to a port that is closed is refused at once and costs next to
/// nothing, so that is what the wait tries every [`POLL`]; the socket table (which can be
/// long to read on a busy machine) is read only once every port accepts, to check that the
/// public one listens publicly, and those reads back off to [`MAX_POLL`]. With owners, a
/// public port held by another program ends the wait at once.
fn wait_until_listening(check: &Check, deadline: Instant) -> Result<(), Vec<String>> {
    let local = is_local(&check.host);
    let mut table_pause = POLL;
    let mut next_owner_check = Instant::now();
    loop {
        let public = accepts(&check.host, check.port);
        let accepting = public
            && check
                .inner_ports
                .iter()
                .all(|inner| accepts(&check.host, inner.port));
        // The socket table is slow to read (the kernel walks every socket): once a look.
        let table = if accepting || (public && !check.owners.is_empty()) {
            listeners()
        } else {
            None
        };
        // Something answers: if it is not the deployment, waiting longer will not make it so.
        if public && !check.owners.is_empty() && Instant::now() >= next_owner_check {
            owned_by(check, table.as_deref())?;
            next_owner_check = Instant::now() + MAX_POLL;
        }
        let ready = accepting
            && match (local, table.as_deref()) {
                (true, Some(table)) => ports_ready(check, table),
                // Elsewhere (or without /proc), a connection is all we can observe.
                _ => true,
            };
        if ready {
            // The answer to come is the deployment's: checked on this very look.
            owned_by(check, table.as_deref())?;
            return Ok(());
        }
        let now = Instant::now();
        if now >= deadline {
            let table = listeners().unwrap_or_default();
            let app = check.app_pid.map(|pid| app_sockets(pid, &table));
            return Err(diagnose(check, &table, app.as_deref()));
        }
        let pause = if accepting {
            // Listening, but not as it must (on localhost only): look again, less often.
            table_pause = (table_pause * 2).min(MAX_POLL);
            table_pause
        } else {
            POLL
        };
        std::thread::sleep(pause.min(deadline - now));
    }
}

/// How often the wait tries to connect.
pub const POLL: Duration = Duration::from_millis(5);
/// The longest pause between two reads of the socket table.
pub const MAX_POLL: Duration = Duration::from_millis(50);

/// With owners: every socket listening on the checked ports is theirs (or their
/// descendants'); otherwise the line that names who holds the port instead.
fn owned(check: &Check) -> Result<(), Vec<String>> {
    if check.owners.is_empty() {
        return Ok(());
    }
    // The socket table and the processes' files are read one after the other, not at once: a
    // socket closed in between (a daemon that binds, closes and binds again as it starts, as
    // varnishd does) would look held by nobody we know. A foreign holder is still there when
    // both are read again.
    owned_by(check, listeners().as_deref()).or_else(|_| owned_by(check, listeners().as_deref()))
}

/// [`owned`], on a socket table already read.
fn owned_by(check: &Check, table: Option<&[Listener]>) -> Result<(), Vec<String>> {
    if check.owners.is_empty() {
        return Ok(());
    }
    let Some(table) = table else {
        return Err(vec![
            "Cannot tell which processes listen (no /proc/net/tcp): no answer can be trusted to be the deployment's.".into(),
        ]);
    };
    let tree = process::trees_of(&check.owners);
    let theirs = listening_sockets_of(&tree, table);
    let owners = check
        .owners
        .iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    for port in std::iter::once(check.port).chain(check.inner_ports.iter().map(|i| i.port)) {
        let foreign: Vec<u64> = table
            .iter()
            .filter(|l| l.port == port && !theirs.contains(l))
            .map(|l| l.inode)
            .collect();
        if foreign.is_empty() {
            continue;
        }
        let who = match process::holder_of_sockets(&foreign) {
            Some((pid, command)) => format!("another program (PID {pid}: {command})"),
            None => "a process this user cannot see".into(),
        };
        return Err(vec![format!(
            "Port {port} is held by {who}, not by this deployment (PID {owners} and its children): its answers would not be the deployment's."
        )]);
    }
    Ok(())
}

/// Whether `host:port` accepts a connection now (closed at once, without a request).
fn accepts(host: &str, port: u16) -> bool {
    let Ok(addr) = format!("{host}:{port}").parse::<std::net::SocketAddr>() else {
        return std::net::TcpStream::connect((host, port)).is_ok();
    };
    std::net::TcpStream::connect_timeout(&addr, POLL).is_ok()
}

/// The sockets the app's process tree (`pid` and its descendants) listens on.
fn app_sockets(pid: i32, table: &[Listener]) -> Vec<Listener> {
    let mut tree = process::descendants(pid);
    tree.push(pid);
    listening_sockets_of(&tree, table)
}

/// Whether `host` is this machine (localhost, or a loopback address).
pub fn is_local(host: &str) -> bool {
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

/// The platform's phrase, then what this machine shows instead. `app` is what the app's
/// own processes listen on, when its PID is known: only then does the diagnosis speak of
/// the app's ports; another program is named as such.
pub fn diagnose(check: &Check, table: &[Listener], app: Option<&[Listener]>) -> Vec<String> {
    let on = |port: u16| table.iter().filter(move |l| l.port == port);
    let port = check.port;
    let app_port = check.app_port();
    let mut lines = Vec::new();
    // Where the app listens instead of where it must, in the user's terms.
    let elsewhere = |must: u16| -> Option<String> {
        let mut ports: Vec<u16> = app?.iter().map(|l| l.port).filter(|&p| p != must).collect();
        ports.sort_unstable();
        ports.dedup();
        (!ports.is_empty()).then(|| {
            let list = ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", ");
            format!("Your application listens on {list}; it must listen on {must}, the PORT it is given.")
        })
    };
    let taken = |port: u16| -> Option<String> {
        let app_holds = app.is_some_and(|a| a.iter().any(|l| l.port == port));
        if app_holds {
            return None;
        }
        process::holder_of(port, table).map(|(pid, command)| {
            format!("Port {port} is taken by another program (PID {pid}: {command}).")
        })
    };
    let public_ok = on(port).any(|l| l.is_public());
    if !public_ok {
        lines.push(format!("Your application is not listening on {port}"));
        if let Some(local) = on(port).next() {
            match taken(port) {
                Some(line) if app.is_some() => lines.push(line),
                _ => {
                    lines.push(
                        "Your application is listening on localhost instead of publicly".into(),
                    );
                    lines.push(format!(
                        "It listens on {}:{port}; it must listen on 0.0.0.0:{port} (bind to 0.0.0.0, not 127.0.0.1 or localhost).",
                        local.addr
                    ));
                }
            }
        } else if let Some(line) = (app_port == port).then(|| elsewhere(port)).flatten() {
            lines.push(line);
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
            None => elsewhere(missing).unwrap_or_else(|| format!("With a middleware in front, the app must listen on {missing} (the PORT it is given), not {port}.")),
            Some(hop) => format!("The middleware {hop} should listen on {missing}: see its output above."),
        });
    }
    // The app's port held by someone else: the app cannot bind it.
    if app.is_some() && app_port != port {
        if let Some(line) = taken(app_port) {
            lines.push(line);
        }
    }
    lines
}

fn probe_all(check: &Check, otoroshi: Option<&Otoroshi>, deadline: Instant) -> Vec<Probe> {
    // Each request within its own timeout, and all of them within the check's deadline.
    let left = deadline.saturating_duration_since(Instant::now());
    let agent = ureq::AgentBuilder::new()
        .redirects(0)
        .timeout(
            check
                .request_timeout
                .min(left)
                .max(Duration::from_millis(1)),
        )
        .build();
    std::thread::scope(|scope| {
        let handles: Vec<_> = check
            .paths
            .iter()
            .map(|path| {
                let agent = &agent;
                scope.spawn(move || probe(agent, check, otoroshi, path))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a probe panicked"))
            .collect()
    })
}

fn probe(agent: &ureq::Agent, check: &Check, otoroshi: Option<&Otoroshi>, path: &str) -> Probe {
    let url = format!("http://{}:{}{}", check.host, check.port, path);
    let started = Instant::now();
    // One request a connection: a kept-alive one would be reset when this process exits,
    // and the app would log that as an error.
    let mut request = agent.get(&url).set("Connection", "close");
    let state = new_state();
    if let Some(otoroshi) = otoroshi {
        request = request.set("Otoroshi-State", &otoroshi.state_token(&state, STATE_TTL));
    }
    let answer = match request.call() {
        Ok(response) | Err(ureq::Error::Status(_, response)) => Ok(response),
        Err(ureq::Error::Transport(t)) => Err(transport_reason(&t)),
    };
    let (status, error) = match answer {
        Ok(response) => {
            // Through a challenge, only an answer it signed for our state is the app's (its
            // own 401, or another server on the port, is not).
            let not_the_apps = otoroshi.and_then(|otoroshi| {
                let signed = response.header("Otoroshi-State-Resp").map(str::as_bytes);
                otoroshi
                    .check_response(signed, &state)
                    .err()
                    .map(|why| format!("not the app's answer: {why}"))
            });
            (Some(response.status()), not_the_apps)
        }
        Err(reason) => (None, Some(reason)),
    };
    let passed = error.is_none()
        && match status {
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
    // Legacy mode: each failed answer as the platform's legacy deployer logs it.
    let legacy_lines: String = verdict
        .probes
        .iter()
        .filter(|p| verdict.legacy && !p.passed)
        .map(|p| {
            format!(
                "GET http://{}:{}{} returned {}!\n",
                verdict.host,
                verdict.port,
                p.path,
                p.outcome()
            )
        })
        .collect();
    if !verdict.listening {
        let diagnosis: String = verdict.diagnosis.iter().map(|l| format!("{l}\n")).collect();
        return legacy_lines + &diagnosis;
    }
    let mut out = String::new();
    for probe in verdict
        .probes
        .iter()
        .filter(|p| !verdict.legacy || p.passed)
    {
        out.push_str(&format!(
            "Response from GET {} is {}\n",
            probe.path,
            probe.outcome()
        ));
    }
    if verdict.legacy {
        return out + &legacy_lines;
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

    /// Legacy mode: Nginx answers 502 while the app server is not there, in the platform's
    /// legacy words, then the diagnosis; a failing path once the ports listen, the same way.
    #[test]
    fn legacy_mode_keeps_the_platforms_legacy_words() {
        let mut verdict = Verdict {
            healthy: false,
            listening: false,
            port: 8080,
            probes: vec![probe("/", Some(502), false)],
            diagnosis: vec!["Some software are not listening as expected: 9000".into()],
            waited_ms: 0,
            legacy: true,
            host: "127.0.0.1".into(),
        };
        assert_eq!(
            render(&verdict),
            "GET http://127.0.0.1:8080/ returned 502!\nSome software are not listening as expected: 9000\n"
        );
        verdict.listening = true;
        verdict.diagnosis.clear();
        verdict.probes = vec![
            probe("/", Some(200), true),
            probe("/health", Some(500), false),
        ];
        assert_eq!(
            render(&verdict),
            "Response from GET / is 200\nGET http://127.0.0.1:8080/health returned 500!\n"
        );
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
            legacy: false,
            host: "127.0.0.1".into(),
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
            legacy: false,
            host: "127.0.0.1".into(),
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
            app_pid: None,
            legacy: false,
            otoroshi_secret_env: None,
            owners: Vec::new(),
        }
    }

    fn l(addr: [u8; 4], port: u16) -> Listener {
        Listener {
            addr: Ipv4Addr::from(addr).into(),
            port,
            inode: 0,
        }
    }

    #[test]
    fn diagnoses() {
        assert_eq!(
            diagnose(&check(None), &[l([127, 0, 0, 1], 8080)], None)[..2],
            [
                "Your application is not listening on 8080",
                "Your application is listening on localhost instead of publicly"
            ]
        );
        // Something else on 9000 says nothing about the app, whose PID is not known.
        assert_eq!(
            diagnose(&check(None), &[l([0, 0, 0, 0], 9000)], None),
            [
                "Your application is not listening on 8080",
                "Nothing listens on port 8080."
            ]
        );
        // The app's own sockets, when its PID is known.
        assert_eq!(
            diagnose(
                &check(None),
                &[l([0, 0, 0, 0], 8123)],
                Some(&[l([0, 0, 0, 0], 8123)])
            ),
            [
                "Your application is not listening on 8080",
                "Your application listens on 8123; it must listen on 8080, the PORT it is given."
            ]
        );
        let proxied = diagnose(&check(Some(9000)), &[l([0, 0, 0, 0], 8080)], None);
        assert_eq!(
            proxied[0],
            "Some software are not listening as expected: 9000"
        );
        let app_elsewhere = diagnose(
            &check(Some(9000)),
            &[l([0, 0, 0, 0], 8080), l([0, 0, 0, 0], 8123)],
            Some(&[l([0, 0, 0, 0], 8123)]),
        );
        assert_eq!(
            app_elsewhere,
            [
                "Some software are not listening as expected: 9000",
                "Your application listens on 8123; it must listen on 9000, the PORT it is given."
            ]
        );
        assert!(diagnose(
            &check(Some(9000)),
            &[l([0, 0, 0, 0], 8080), l([127, 0, 0, 1], 9000)],
            None
        )
        .is_empty());
    }

    #[test]
    fn another_program_on_the_port_is_named_as_such() {
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = other.local_addr().unwrap().port();
        let table = listeners().unwrap();
        let mut c = check(None);
        c.port = port;
        let lines = diagnose(&c, &table, Some(&[]));
        assert_eq!(
            lines[0],
            format!("Your application is not listening on {port}")
        );
        assert!(
            lines[1].starts_with(&format!(
                "Port {port} is taken by another program (PID {}",
                std::process::id()
            )),
            "{lines:?}"
        );
    }
}
