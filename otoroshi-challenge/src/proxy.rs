//! The reverse proxy: every request must carry a valid `Otoroshi-State`; valid ones go to the
//! app without that header, bodies streamed both ways over a pooled keep-alive connection,
//! and come back with `Otoroshi-State-Resp`. Anything else gets a 401 and never reaches the app.
//! A valid upgrade request (WebSocket) gets its own connection to the app, spliced to the
//! client's once the app answers `101 Switching Protocols`.

use crate::token::{Challenge, Rejection};
use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_TYPE, UPGRADE};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

type Body = BoxBody<Bytes, hyper::Error>;

/// Headers that belong to one connection, never forwarded (RFC 9110, 7.6.1).
const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "transfer-encoding",
    "upgrade",
];
/// At most this many request headers.
pub const MAX_HEADERS: usize = 100;
/// How long to wait before accepting again after `accept` failed.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// How long in-flight requests may take to finish after SIGTERM.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// How long the app has to answer by default, before the client gets `504`.
pub const DEFAULT_APP_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Proxy {
    challenge: Challenge,
    client: Client<HttpConnector, Incoming>,
    forward: u16,
    /// How long the app has to send its answer's head.
    app_timeout: Duration,
}

impl Proxy {
    pub fn new(secret: &[u8], forward: u16, app_timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Proxy {
            challenge: Challenge::new(secret),
            client,
            forward,
            app_timeout,
        }
    }

    async fn handle(&self, request: Request<Incoming>, client: SocketAddr) -> Response<Body> {
        let token = request
            .headers()
            .get("otoroshi-state")
            .map(HeaderValue::as_bytes);
        let state = match self.challenge.verify(token) {
            Ok(state) => state,
            Err(rejection) => return rejected(&rejection),
        };
        if is_upgrade(request.headers()) {
            return self.tunnel(request, &state, client).await;
        }
        let (mut parts, body) = request.into_parts();
        to_the_app(&mut parts.headers, client);
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        parts.uri = match format!("http://127.0.0.1:{}{path}", self.forward).parse::<Uri>() {
            Ok(uri) => uri,
            Err(_) => {
                return json(
                    StatusCode::BAD_REQUEST,
                    "Bad Request",
                    "invalid request target",
                )
            }
        };
        let asked = self.client.request(Request::from_parts(parts, body));
        match tokio::time::timeout(self.app_timeout, asked).await {
            Ok(Ok(response)) => self.answer(response, &state),
            Ok(Err(e)) => self.app_down(&e),
            Err(_) => self.app_too_slow(),
        }
    }

    /// The app's answer, with its hop-by-hop headers removed and the response token added.
    fn answer(&self, response: Response<Incoming>, state: &str) -> Response<Body> {
        let (mut parts, body) = response.into_parts();
        remove_hop_by_hop(&mut parts.headers);
        self.sign(&mut parts.headers, state);
        Response::from_parts(parts, body.boxed())
    }

    fn sign(&self, headers: &mut HeaderMap, state: &str) {
        headers.insert("otoroshi-state-resp", self.challenge.sign_response(state));
    }

    fn app_down(&self, error: &(dyn std::error::Error + 'static)) -> Response<Body> {
        json(
            StatusCode::BAD_GATEWAY,
            "Bad Gateway",
            &format!(
                "the app on 127.0.0.1:{} does not answer ({})",
                self.forward,
                root_cause(error)
            ),
        )
    }

    fn app_too_slow(&self) -> Response<Body> {
        json(
            StatusCode::GATEWAY_TIMEOUT,
            "Gateway Timeout",
            &format!(
                "the app on 127.0.0.1:{} did not answer within {}",
                self.forward,
                humantime::format_duration(self.app_timeout)
            ),
        )
    }

    /// An upgrade (WebSocket): the request goes to the app on a connection of its own; when
    /// the app switches protocols, both upgraded connections are spliced together.
    async fn tunnel(
        &self,
        mut request: Request<Incoming>,
        state: &str,
        client: SocketAddr,
    ) -> Response<Body> {
        let from_client = hyper::upgrade::on(&mut request);
        let (mut parts, body) = request.into_parts();
        let protocol = parts.headers.get(UPGRADE).cloned();
        to_the_app(&mut parts.headers, client);
        if let Some(protocol) = protocol {
            parts.headers.insert(UPGRADE, protocol);
            parts
                .headers
                .insert(CONNECTION, HeaderValue::from_static("upgrade"));
        }
        let stream = match TcpStream::connect(("127.0.0.1", self.forward)).await {
            Ok(stream) => stream,
            Err(e) => return self.app_down(&e),
        };
        let (mut sender, connection) =
            match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
                Ok(pair) => pair,
                Err(e) => return self.app_down(&e),
            };
        tokio::spawn(connection.with_upgrades());
        let asked = sender.send_request(Request::from_parts(parts, body));
        let mut response = match tokio::time::timeout(self.app_timeout, asked).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => return self.app_down(&e),
            Err(_) => return self.app_too_slow(),
        };
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            return self.answer(response, state);
        }
        let from_app = hyper::upgrade::on(&mut response);
        tokio::spawn(async move {
            if let (Ok(client), Ok(app)) = tokio::join!(from_client, from_app) {
                let _ = tokio::io::copy_bidirectional(
                    &mut TokioIo::new(client),
                    &mut TokioIo::new(app),
                )
                .await;
            }
        });
        // The 101 keeps its Upgrade and Connection headers: they are the switch itself.
        let (mut parts, _) = response.into_parts();
        self.sign(&mut parts.headers, state);
        Response::from_parts(
            parts,
            http_body_util::Empty::new()
                .map_err(|never| match never {})
                .boxed(),
        )
    }
}

/// `Connection: upgrade` with an `Upgrade` header.
fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(UPGRADE)
        && headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

fn rejected(rejection: &Rejection) -> Response<Body> {
    json(
        StatusCode::UNAUTHORIZED,
        "Invalid Otoroshi challenge",
        &rejection.to_string(),
    )
}

fn json(status: StatusCode, error: &str, details: &str) -> Response<Body> {
    let body = serde_json::json!({"error": error, "details": details}).to_string();
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// The request's headers as the app gets them: no hop-by-hop headers, no token, and who
/// the client was.
fn to_the_app(headers: &mut HeaderMap, client: SocketAddr) {
    remove_hop_by_hop(headers);
    headers.remove("otoroshi-state");
    add_forwarded(headers, client);
}

/// Removes the hop-by-hop headers, and those the `Connection` header names.
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

fn add_forwarded(headers: &mut HeaderMap, client: SocketAddr) {
    let ip = client.ip().to_string();
    let value = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(earlier) => format!("{earlier}, {ip}"),
        None => ip,
    };
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert("x-forwarded-for", value);
    }
    if !headers.contains_key("x-forwarded-proto") {
        headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    }
}

/// Serves until `shutdown` completes, then lets in-flight requests finish (up to the grace
/// period) before returning. (Not hyper-util's `GracefulShutdown`: it does not take a
/// connection with upgrades, which WebSocket needs.)
pub async fn serve(listener: TcpListener, proxy: Arc<Proxy>, shutdown: impl Future<Output = ()>) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.max_headers(MAX_HEADERS).max_buf_size(64 * 1024);
    // Connections watch `stopping`; each holds a clone of `alive`, so `all_closed` ends
    // when the last one has finished.
    let (stop, stopping) = watch::channel(false);
    let (alive, mut all_closed) = mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, client) = match accepted {
                    Ok(accepted) => accepted,
                    // Out of file descriptors (EMFILE) or the like: accepting again at once
                    // would spin; give connections in flight a moment to close.
                    Err(_) => {
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let proxy = proxy.clone();
                let service = service_fn(move |request| {
                    let proxy = proxy.clone();
                    async move { Ok::<_, Infallible>(proxy.handle(request, client).await) }
                });
                let connection = http.serve_connection(TokioIo::new(stream), service).with_upgrades();
                let (mut stopping, alive) = (stopping.clone(), alive.clone());
                tokio::spawn(async move {
                    let _alive = alive;
                    tokio::pin!(connection);
                    tokio::select! {
                        _ = connection.as_mut() => return,
                        _ = stopping.wait_for(|stop| *stop) => {}
                    }
                    // Finish the request in flight, then close.
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = stop.send(true);
    drop(alive);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, all_closed.recv()).await;
}
