//! The challenge proxy between a client and the real hello app.

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;
use testkit::{bin, free_port, http_get, root, wait_for_port, ProcessGuard, Response};

const SECRET: &str = "a-shared-secret-for-tests";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token(claims: serde_json::Value, alg: Algorithm, secret: &str) -> String {
    encode(
        &Header::new(alg),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn valid_token(state: &str) -> String {
    token(
        json!({"iss": "Otoroshi", "state": state, "iat": now(), "nbf": now(), "exp": now() + 30}),
        Algorithm::HS512,
        SECRET,
    )
}

/// The proxy on `listen` in front of `forward`, once it accepts connections.
fn start_proxy(listen: u16, forward: u16) -> ProcessGuard {
    let mut cmd = Command::new(bin("otoroshi-challenge"));
    testkit::cleared(&mut cmd)
        .args([
            "--listen",
            &listen.to_string(),
            "--forward",
            &forward.to_string(),
        ])
        .env("OTOROSHI_CHALLENGE_SECRET", SECRET);
    let proxy = ProcessGuard::spawn(&mut cmd);
    assert!(wait_for_port(listen, Duration::from_secs(10)));
    proxy
}

/// Reads an HTTP head (up to the blank line) byte by byte, leaving what follows unread.
fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).to_ascii_lowercase()
}

/// The hello app and the proxy in front of it.
struct Chain {
    proxy: ProcessGuard,
    _app: Option<ProcessGuard>,
    listen: u16,
    app_port: u16,
}

fn start(with_app: bool) -> Chain {
    let (listen, app_port) = (free_port(), free_port());
    let app = with_app.then(|| {
        let mut cmd = Command::new("python3");
        cmd.arg(root().join("examples/hello/app.py"))
            .env("PORT", app_port.to_string())
            .env("HELLO_SLOW_SECONDS", "60")
            .stderr(std::process::Stdio::null());
        let guard = ProcessGuard::spawn(&mut cmd);
        assert!(wait_for_port(app_port, Duration::from_secs(10)));
        guard
    });
    let proxy = start_proxy(listen, app_port);
    Chain {
        proxy,
        _app: app,
        listen,
        app_port,
    }
}

impl Chain {
    fn get(&self, path: &str, token: Option<&str>) -> Response {
        let headers: Vec<(&str, &str)> = token.map(|t| ("Otoroshi-State", t)).into_iter().collect();
        http_get(self.listen, path, &headers).unwrap()
    }

    /// Requests that reached the app, counted by the app itself (this one included).
    fn app_count(&self) -> u64 {
        http_get(self.app_port, "/count", &[])
            .unwrap()
            .body
            .trim()
            .parse()
            .unwrap()
    }
}

#[test]
fn a_valid_token_reaches_the_app_and_comes_back_signed() {
    let chain = start(true);
    let response = chain.get("/headers", Some(&valid_token("state-42")));
    assert_eq!(response.status, 200);
    let seen: serde_json::Value = serde_json::from_str(&response.body).unwrap();
    // Header names are case-insensitive: compare them in lower case.
    let seen: serde_json::Map<String, serde_json::Value> = seen
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect();
    assert!(
        !seen.contains_key("otoroshi-state"),
        "the app never sees the token: {seen:?}"
    );
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");

    let resp_token = response
        .header("Otoroshi-State-Resp")
        .expect("Otoroshi-State-Resp");
    let mut validation = jsonwebtoken::Validation::new(Algorithm::HS512);
    validation.set_audience(&["Otoroshi"]);
    let claims = jsonwebtoken::decode::<serde_json::Value>(
        resp_token,
        &jsonwebtoken::DecodingKey::from_secret(SECRET.as_bytes()),
        &validation,
    )
    .unwrap()
    .claims;
    assert_eq!(claims["state-resp"], "state-42");
    assert_eq!(claims["aud"], "Otoroshi");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        30
    );
}

#[test]
fn every_bad_request_gets_401_with_the_reason_and_never_reaches_the_app() {
    let chain = start(true);
    let hs256 = token(
        json!({"iss": "Otoroshi", "state": "s", "exp": now() + 30}),
        Algorithm::HS256,
        SECRET,
    );
    let cases: Vec<(Option<String>, &str)> = vec![
        (None, "Missing Otoroshi-State header"),
        (Some(token(json!({"iss": "Otoroshi", "state": "s", "exp": now() + 30}), Algorithm::HS512, "wrong")), "JWT verification failed: InvalidSignature"),
        (Some(token(json!({"iss": "Mallory", "state": "s", "exp": now() + 30}), Algorithm::HS512, SECRET)), "JWT verification failed: InvalidIssuer"),
        (Some(token(json!({"iss": "Otoroshi", "state": "s", "exp": now() - 60}), Algorithm::HS512, SECRET)), "JWT verification failed: ExpiredSignature"),
        (Some(token(json!({"iss": "Otoroshi", "state": "s"}), Algorithm::HS512, SECRET)), "Missing required claim: exp"),
        (Some("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJpc3MiOiJPdG9yb3NoaSIsInN0YXRlIjoicyIsImV4cCI6OTk5OTk5OTk5OX0.".into()), "JWT verification failed: "),
        (Some(hs256), "JWT verification failed: InvalidAlgorithm"),
        (Some("garbage".into()), "JWT verification failed: InvalidToken"),
        (Some("x".repeat(6000)), "Otoroshi-State header too large"),
    ];
    let before = chain.app_count();
    for (token, reason) in &cases {
        let response = chain.get("/count", token.as_deref());
        assert_eq!(response.status, 401, "{reason}");
        let body: serde_json::Value = serde_json::from_str(&response.body).unwrap();
        assert_eq!(body["error"], "Invalid Otoroshi challenge");
        assert!(
            body["details"].as_str().unwrap().starts_with(reason),
            "{body} / {reason}"
        );
    }
    assert_eq!(
        chain.app_count(),
        before + 1,
        "only the counting request itself reached the app"
    );
}

#[test]
fn a_large_upload_streams_through_intact() {
    let chain = start(true);
    let body: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let mut stream = TcpStream::connect(("127.0.0.1", chain.listen)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "POST /echo HTTP/1.1\r\nHost: x\r\nOtoroshi-State: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        valid_token("upload"),
        body.len()
    )
    .unwrap();
    stream.write_all(&body).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let expected = format!("{} {:x}", body.len(), Sha256::digest(&body));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.trim_end().ends_with(&expected), "{answer}");
}

#[test]
fn the_app_down_gives_502() {
    let chain = start(false);
    let response = chain.get("/", Some(&valid_token("s")));
    assert_eq!(response.status, 502);
    assert!(
        response.body.contains("does not answer"),
        "{}",
        response.body
    );
}

#[test]
fn sigterm_lets_an_in_flight_request_finish() {
    let mut chain = start(true);
    let listen = chain.listen;
    let token = valid_token("slow");
    let slow = std::thread::spawn(move || {
        http_get(listen, "/slow", &[("Otoroshi-State", &token)]).unwrap()
    });
    // The request is in flight once the app is answering it (`/inflight` leaves itself out).
    assert!(testkit::wait_until(Duration::from_secs(10), || http_get(
        chain.app_port,
        "/inflight",
        &[]
    )
    .unwrap()
    .body
    .trim()
        == "1"));
    chain.proxy.signal(nix::sys::signal::Signal::SIGTERM);
    // Stopping: the proxy no longer accepts. Only then may the app answer.
    assert!(testkit::wait_until(Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", listen)).is_err()
    }));
    http_get(chain.app_port, "/release", &[]).unwrap();
    let response = slow.join().unwrap();
    assert_eq!(
        (response.status, response.body.as_str()),
        (200, "slow answer\n")
    );
    let status = chain
        .proxy
        .wait_timeout(Duration::from_secs(10))
        .expect("the proxy stops");
    assert!(status.success());
}

#[test]
fn an_app_that_never_answers_gets_504_after_the_timeout() {
    // Accepts, reads, never answers.
    let silent = testkit::TinyServer::start("127.0.0.1", free_port(), &[("/", 0)]);
    let listen = free_port();
    let mut cmd = Command::new(bin("otoroshi-challenge"));
    cmd.args([
        "--listen",
        &listen.to_string(),
        "--forward",
        &silent.port.to_string(),
    ])
    .env("OTOROSHI_CHALLENGE_SECRET", SECRET)
    .env("OTOROSHI_CHALLENGE_APP_TIMEOUT", "500ms");
    let _proxy = ProcessGuard::spawn(&mut cmd);
    assert!(wait_for_port(listen, Duration::from_secs(10)));
    let response = http_get(listen, "/", &[("Otoroshi-State", &valid_token("t"))]).unwrap();
    assert_eq!(response.status, 504);
    let body: serde_json::Value = serde_json::from_str(&response.body).unwrap();
    assert_eq!(body["error"], "Gateway Timeout");
    assert_eq!(
        body["details"],
        format!(
            "the app on 127.0.0.1:{} did not answer within 500ms",
            silent.port
        )
    );
}

#[test]
fn no_secret_no_start() {
    let out = Command::new(bin("otoroshi-challenge"))
        .args(["--listen", "1", "--forward", "2"])
        .env_remove("OTOROSHI_CHALLENGE_SECRET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("error: OTOROSHI_CHALLENGE_SECRET is not set"));
}

#[test]
fn too_many_headers_are_refused_before_the_app() {
    let chain = start(true);
    let before = chain.app_count();
    let mut stream = TcpStream::connect(("127.0.0.1", chain.listen)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut request = format!(
        "GET /count HTTP/1.1\r\nHost: x\r\nOtoroshi-State: {}\r\n",
        valid_token("many")
    );
    for i in 0..200 {
        request.push_str(&format!("X-Filler-{i}: {i}\r\n"));
    }
    request.push_str("Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert_eq!(
        chain.app_count(),
        before + 1,
        "only the counting request reached the app"
    );
}

/// A backend that switches protocols (101) on an upgrade request, then echoes every byte,
/// as a WebSocket server would after its handshake. Returns its port.
fn upgrading_backend() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let head = read_head(&mut stream);
        assert!(
            head.contains("upgrade: echo") && !head.contains("otoroshi-state"),
            "{head}"
        );
        stream
            .write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n",
            )
            .unwrap();
        let mut buf = [0u8; 1024];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 || stream.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
    port
}

#[test]
fn an_upgrade_is_spliced_through_to_the_app() {
    let listen = free_port();
    let backend = upgrading_backend();
    let _proxy = start_proxy(listen, backend);

    let mut stream = TcpStream::connect(("127.0.0.1", listen)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET /socket HTTP/1.1\r\nHost: x\r\nOtoroshi-State: {}\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n",
        valid_token("ws")
    )
    .unwrap();
    let head = read_head(&mut stream);
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(
        head.contains("upgrade: echo") && head.contains("otoroshi-state-resp: "),
        "{head}"
    );
    for message in ["ping", "a second frame"] {
        stream.write_all(message.as_bytes()).unwrap();
        let mut echoed = vec![0u8; message.len()];
        stream.read_exact(&mut echoed).unwrap();
        assert_eq!(echoed, message.as_bytes());
    }
}
