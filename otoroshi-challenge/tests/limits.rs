//! What bounds the proxy's clients: the header and idle timeouts, the connection limit, a
//! prompt stop; what it passes on (`Host`, `X-Forwarded-Proto`); a malformed body; and
//! `otoroshi-challenge token`, the token users try their chain with.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use testkit::{bin, free_port, http_get, root, wait_for_port, ProcessGuard, TinyServer};

const SECRET: &str = "a-shared-secret-for-limits";

/// The proxy on a free port in front of `forward`, with these extra variables, started
/// through `sh` so that `ulimit` can be set first; once it accepts connections.
fn proxy(forward: u16, env: &[(&str, &str)], ulimit: Option<u32>) -> (ProcessGuard, u16) {
    let listen = free_port();
    let exec = format!(
        "{}exec \"$0\" --listen {listen} --forward {forward}",
        ulimit.map_or(String::new(), |n| format!("ulimit -n {n} && "))
    );
    let mut cmd = Command::new("sh");
    testkit::cleared(&mut cmd)
        .args(["-c", &exec])
        .arg(bin("otoroshi-challenge"))
        .env("OTOROSHI_CHALLENGE_SECRET", SECRET)
        .envs(env.iter().copied());
    let guard = ProcessGuard::spawn(&mut cmd);
    assert!(wait_for_port(listen, Duration::from_secs(10)));
    (guard, listen)
}

/// A token made by the tool itself, as a user would make one.
fn token() -> String {
    let out = Command::new(bin("otoroshi-challenge"))
        .arg("token")
        .env_clear()
        .env("OTOROSHI_CHALLENGE_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The hello app on a free port.
fn hello() -> (ProcessGuard, u16) {
    let port = free_port();
    let mut cmd = Command::new("python3");
    cmd.arg(root().join("examples/hello/app.py"))
        .env("PORT", port.to_string())
        .stderr(std::process::Stdio::null());
    let guard = ProcessGuard::spawn(&mut cmd);
    assert!(wait_for_port(port, Duration::from_secs(10)));
    (guard, port)
}

/// Whether the server closes `stream` before `within` (a read returns end of file or an
/// error other than the timeout).
fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                )
            }
        }
    }
}

#[test]
fn the_token_command_prints_a_token_the_proxy_accepts() {
    let (_app, app_port) = hello();
    let (_proxy, listen) = proxy(app_port, &[], None);
    let response = http_get(listen, "/", &[("Otoroshi-State", &token())]).unwrap();
    assert_eq!(
        (response.status, response.body.as_str()),
        (200, "Hello from uv!\n")
    );

    // The secret comes from the environment only.
    let out = Command::new(bin("otoroshi-challenge"))
        .arg("token")
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .starts_with("error: OTOROSHI_CHALLENGE_SECRET is not set"));
    let out = Command::new(bin("otoroshi-challenge"))
        .args(["token", "--secret", SECRET])
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "no secret on the command line");

    let out = Command::new(bin("otoroshi-challenge"))
        .args(["--listen", "1", "--forward", "2", "--idle-timeout", "0s"])
        .env("OTOROSHI_CHALLENGE_SECRET", SECRET)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("`0s` would close every connection at once")
    );

    let help = Command::new(bin("otoroshi-challenge"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("token")
            && help.contains("curl -H \"Otoroshi-State: $(otoroshi-challenge token)\""),
        "{help}"
    );
}

#[test]
fn host_is_never_removed_and_x_forwarded_proto_is_what_the_proxy_knows() {
    let (_app, app_port) = hello();
    let (_proxy, listen) = proxy(app_port, &[], None);
    let response = http_get(
        listen,
        "/headers",
        &[
            ("Otoroshi-State", &token()),
            ("Connection", "Host"),
            ("X-Forwarded-Proto", "https"),
        ],
    )
    .unwrap();
    assert_eq!(response.status, 200, "{}", response.body);
    let seen: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str::<serde_json::Value>(&response.body)
            .unwrap()
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
    assert_eq!(seen["host"], "localhost", "{seen:?}");
    assert_eq!(seen["x-forwarded-proto"], "http", "{seen:?}");
}

#[test]
fn a_malformed_chunked_body_is_the_clients_fault() {
    // Reads the request and never answers: the only answer is about the body.
    let app = TinyServer::start("127.0.0.1", 0, &[("/upload", 0)]);
    let (_proxy, listen) = proxy(app.port, &[], None);
    let mut stream = TcpStream::connect(("127.0.0.1", listen)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "POST /upload HTTP/1.1\r\nHost: x\r\nOtoroshi-State: {}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nZZZ\r\nabc\r\n0\r\n\r\n",
        token()
    )
    .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("the request body is malformed"), "{answer}");
}

#[test]
fn a_head_that_never_ends_is_closed_after_the_header_timeout() {
    let app = TinyServer::start("127.0.0.1", 0, &[("/", 200)]);
    let (_proxy, listen) = proxy(
        app.port,
        &[("OTOROSHI_CHALLENGE_HEADER_TIMEOUT", "1s")],
        None,
    );
    let mut stream = TcpStream::connect(("127.0.0.1", listen)).unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    let started = Instant::now();
    assert!(closed_within(&mut stream, Duration::from_secs(10)));
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[test]
fn a_connection_without_a_request_is_closed_after_the_idle_timeout() {
    let app = TinyServer::start("127.0.0.1", 0, &[("/", 200)]);
    let (_proxy, listen) = proxy(app.port, &[("OTOROSHI_CHALLENGE_IDLE_TIMEOUT", "1s")], None);
    let mut idle = TcpStream::connect(("127.0.0.1", listen)).unwrap();
    assert!(closed_within(&mut idle, Duration::from_secs(10)));
    // A kept-alive connection after its answer, too.
    let mut kept = TcpStream::connect(("127.0.0.1", listen)).unwrap();
    write!(
        kept,
        "GET / HTTP/1.1\r\nHost: x\r\nOtoroshi-State: {}\r\n\r\n",
        token()
    )
    .unwrap();
    let mut head = [0u8; 12];
    kept.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    kept.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    assert!(closed_within(&mut kept, Duration::from_secs(10)));
}

/// With few file descriptors, idle connections beyond what the proxy can hold do not keep a
/// real request out: the longest idle ones are closed to make room.
#[test]
fn idle_connections_cannot_starve_a_real_request() {
    let (_app, app_port) = hello();
    let (_proxy, listen) = proxy(app_port, &[], Some(256));
    let idle: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(("127.0.0.1", listen)).unwrap())
        .collect();
    let token = token();
    let (done, answered) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(http_get(listen, "/", &[("Otoroshi-State", &token)]).map(|r| r.status));
    });
    let status = answered
        .recv_timeout(Duration::from_secs(10))
        .expect("an answer within 10 s");
    assert_eq!(status.unwrap(), 200);
    drop(idle);
}

/// Whether the proxy has read all that `client` sent it: its end of the connection has
/// nothing left to read (`rx_queue` in /proc/net/tcp).
fn read_by_proxy(listen: u16, client: &TcpStream) -> bool {
    let port = client.local_addr().unwrap().port();
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields[1].ends_with(&format!(":{listen:04X}"))
            && fields[2].ends_with(&format!(":{port:04X}"))
            && fields[4].split(':').nth(1) == Some("00000000")
    })
}

/// An app that says when a request has reached it, then never answers (it waits for the
/// rest of the body, if any); returns its port and where it says so.
fn holding_app() -> (u16, mpsc::Receiver<()>) {
    let app = TcpListener::bind("127.0.0.1:0").unwrap();
    let app_port = app.local_addr().unwrap().port();
    let (reached, reached_app) = mpsc::channel();
    std::thread::spawn(move || {
        if let Ok((mut stream, _)) = app.accept() {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = reached.send(());
            let _ = stream.read(&mut buf);
            std::thread::sleep(Duration::from_secs(60));
        }
    });
    (app_port, reached_app)
}

/// Past the connection limit, the longest idle connection makes room; when every connection
/// has a request in flight, a new client is told so at once.
#[test]
fn past_the_connection_limit() {
    let (app_port, reached_app) = holding_app();
    let (_proxy, listen) = proxy(
        app_port,
        &[("OTOROSHI_CHALLENGE_MAX_CONNECTIONS", "1")],
        None,
    );
    let mut idle = TcpStream::connect(("127.0.0.1", listen)).unwrap();
    let mut busy = TcpStream::connect(("127.0.0.1", listen)).unwrap();
    assert!(
        closed_within(&mut idle, Duration::from_secs(10)),
        "the idle one made room"
    );
    write!(
        busy,
        "GET / HTTP/1.1\r\nHost: x\r\nOtoroshi-State: {}\r\n\r\n",
        token()
    )
    .unwrap();
    reached_app
        .recv_timeout(Duration::from_secs(10))
        .expect("the request reaches the app");
    let mut refused = TcpStream::connect(("127.0.0.1", listen)).unwrap();
    refused
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = String::new();
    let _ = refused.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer:?}");
    assert!(
        answer.ends_with("\"details\":\"too many connections, each with a request\"}"),
        "{answer:?}"
    );
}

/// SIGTERM does not wait on a client that stopped sending its request: the stop is over
/// within a bound (the header timeout, 1 s here), not the 30 s grace of in-flight requests.
#[test]
fn sigterm_does_not_wait_on_a_half_sent_request() {
    let (app_port, reached_app) = holding_app();
    let (mut proxy, listen) = proxy(
        app_port,
        &[("OTOROSHI_CHALLENGE_HEADER_TIMEOUT", "1s")],
        None,
    );
    // One half-sent body, and one half-sent head.
    let mut body = TcpStream::connect(("127.0.0.1", listen)).unwrap();
    write!(
        body,
        "POST / HTTP/1.1\r\nHost: x\r\nOtoroshi-State: {}\r\nContent-Length: 1000\r\n\r\nhalf",
        token()
    )
    .unwrap();
    reached_app
        .recv_timeout(Duration::from_secs(10))
        .expect("the request reaches the app");
    let mut head = TcpStream::connect(("127.0.0.1", listen)).unwrap();
    head.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    assert!(testkit::wait_until(Duration::from_secs(10), || {
        read_by_proxy(listen, &head)
    }));
    let started = Instant::now();
    proxy.signal(nix::sys::signal::Signal::SIGTERM);
    let status = proxy
        .wait_timeout(Duration::from_secs(10))
        .expect("the proxy stops within 10 s");
    assert!(status.success());
    assert!(started.elapsed() < Duration::from_secs(10));
}
