//! The reverse proxy: every request must carry a valid `Otoroshi-State`; valid ones go to the
//! app without that header, bodies streamed both ways over a pooled keep-alive connection,
//! and come back with `Otoroshi-State-Resp`. Anything else gets a 401 and never reaches the app.
//! A valid upgrade request (WebSocket) gets its own connection to the app, spliced to the
//! client's once the app answers `101 Switching Protocols`.
//!
//! Client connections are bounded in time and number ([`Limits`]): a request head must come
//! whole within the header timeout, a connection without a request closes after the idle
//! timeout, and past the connection limit (or out of file descriptors) the longest idle
//! connection is closed to make room, so that idle clients cannot starve a real request.

use crate::token::{Challenge, Rejection};
use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_TYPE, HOST, UPGRADE};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify};

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
/// Headers a `Connection` header may name but that are never removed: without `Host`, the
/// app would see the proxy's address instead of the site asked for.
const NEVER_HOP_BY_HOP: [HeaderName; 1] = [HOST];
/// How long to wait before accepting again after `accept` failed with nothing to close.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// After closing an idle connection to free a descriptor: time for it to be closed.
const SHED_PAUSE: Duration = Duration::from_millis(5);
/// How long in-flight requests may take to finish after SIGTERM.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// How long the app has to answer by default, before the client gets `504`.
pub const DEFAULT_APP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a client has by default to send a whole request head, once begun.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection may stay without a request by default.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The shortest pause between two looks at a connection's deadline.
const MIN_LOOK_AGAIN: Duration = Duration::from_millis(1);
/// File descriptors kept for everything but client connections (the listener, the
/// runtime's, stdio, ...).
const RESERVED_FDS: u64 = 32;
/// The connection limit when the open files limit cannot be read.
const FALLBACK_MAX_CONNECTIONS: usize = 4096;
/// The answer to a connection past the limit when every connection has a request in flight.
const BUSY_ANSWER: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: 85\r\nconnection: close\r\n\r\n{\"error\":\"Service Unavailable\",\"details\":\"too many connections, each with a request\"}";

/// How client connections are bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// From a request head's first byte to its end.
    pub header_timeout: Duration,
    /// A connection without a request in flight, from its last byte.
    pub idle_timeout: Duration,
    /// Client connections held at once.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: FALLBACK_MAX_CONNECTIONS,
        }
    }
}

/// The connection limit the open files limit allows: two descriptors a connection (the
/// client's, and the app's while a request is in flight or pooled), some kept aside. The soft
/// limit is first raised to the hard one, as servers do.
pub fn max_connections_from_limit() -> usize {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return FALLBACK_MAX_CONNECTIONS;
    };
    let soft = if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        hard
    } else {
        soft
    };
    let usable = soft.min(1 << 20).saturating_sub(RESERVED_FDS);
    ((usable / 2) as usize).max(1)
}

pub struct Proxy {
    challenge: Challenge,
    client: Client<HttpConnector, ToApp>,
    forward: u16,
    /// How long the app has to send its answer's head.
    app_timeout: Duration,
    connections: Connections,
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
            connections: Connections::new(),
        }
    }

    /// One request of the connection `link`: the connection counts as busy until the
    /// answer's body has been sent.
    async fn serve_request(
        &self,
        request: Request<Incoming>,
        client: SocketAddr,
        link: &Arc<Link>,
    ) -> Response<Served> {
        let in_flight = InFlight::start(link, request.body().is_end_stream());
        let request = request.map(|body| ToApp {
            body,
            link: link.clone(),
        });
        self.handle(request, client, link).await.map(|body| Served {
            body,
            _in_flight: in_flight,
        })
    }

    async fn handle(
        &self,
        request: Request<ToApp>,
        client: SocketAddr,
        link: &Link,
    ) -> Response<Body> {
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
            // The client's body was not valid HTTP: the client's fault, not the app's.
            Ok(Err(e)) if link.body_failed.load(Ordering::Relaxed) => json(
                StatusCode::BAD_REQUEST,
                "Bad Request",
                &format!("the request body is malformed ({})", root_cause(&e)),
            ),
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
        mut request: Request<ToApp>,
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
        // The tunnel holds two descriptors as a connection does: it counts as one, never idle.
        let (tunnel, connections) = (self.connections.open(), self.connections.clone());
        tunnel.busy.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let _slot = Slot(connections, tunnel.id);
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

/// Removes the hop-by-hop headers, and those the `Connection` header names (but `Host`).
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .filter(|name| !NEVER_HOP_BY_HOP.contains(name))
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
    // What this proxy knows: the client spoke plain HTTP to it, whatever the client claims.
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
}

/// Serves until `shutdown` completes, then closes idle connections at once and lets
/// in-flight requests finish (up to the grace period) before returning. (Not hyper-util's
/// `GracefulShutdown`: it does not take a connection with upgrades, which WebSocket needs.)
pub async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
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
                    // Out of file descriptors (EMFILE) or the like: close the longest idle
                    // connection, and the one waiting gets in; with none to close, accepting
                    // again at once would spin.
                    Err(_) => {
                        let pause = if proxy.connections.close_longest_idle() { SHED_PAUSE } else { ACCEPT_BACKOFF };
                        tokio::time::sleep(pause).await;
                        continue;
                    }
                };
                if proxy.connections.len() >= limits.max_connections
                    && !proxy.connections.close_longest_idle()
                {
                    // Every connection has a request in flight: say so, and close this one.
                    let _ = stream.try_write(BUSY_ANSWER);
                    continue;
                }
                let _ = stream.set_nodelay(true);
                let link = proxy.connections.open();
                let io = TokioIo::new(Watched { stream, link: link.clone() });
                let service = {
                    let (proxy, link) = (proxy.clone(), link.clone());
                    service_fn(move |request| {
                        let (proxy, link) = (proxy.clone(), link.clone());
                        async move { Ok::<_, Infallible>(proxy.serve_request(request, client, &link).await) }
                    })
                };
                let connection = http.serve_connection(io, service).with_upgrades();
                let (stopping, alive, connections) = (stopping.clone(), alive.clone(), proxy.connections.clone());
                tokio::spawn(async move {
                    let _alive = alive;
                    let _slot = Slot(connections, link.id);
                    watch_connection(connection, &link, limits, stopping).await;
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

/// Drives one client connection until it ends, or is closed: shed to make room, idle too
/// long, or its request head too slow. After `stopping`, a request in flight finishes (unless
/// its client stops sending its body for the header timeout), an idle connection closes, and
/// a half-sent head is not waited for.
async fn watch_connection<C>(
    connection: C,
    link: &Link,
    limits: Limits,
    mut stopping: watch::Receiver<bool>,
) where
    C: Future + SupportsGracefulShutdown,
{
    tokio::pin!(connection);
    let mut stopped = false;
    loop {
        // Requests beginning and ending move the deadline without a word (a wake-up for each
        // would cost the proxy its throughput): look again every half header timeout, which
        // sees a head begun in time to close it at its own deadline, to the millisecond.
        let look_again = Instant::now() + (limits.header_timeout / 2).max(MIN_LOOK_AGAIN);
        let deadline = link
            .deadline(&limits, stopped)
            .map_or(look_again, |deadline| deadline.min(look_again));
        let timer = tokio::time::sleep_until(deadline.into());
        tokio::select! {
            biased;
            _ = connection.as_mut() => return,
            () = link.closing.notified() => return,
            _ = stopping.wait_for(|stop| *stop), if !stopped => {
                stopped = true;
                // hyper finishes the request in flight, then closes; an idle connection it
                // closes at once (after sending what it has written); a half-sent head it
                // would wait for: that one the deadline closes.
                connection.as_mut().graceful_shutdown();
            }
            () = timer => {
                if link.deadline(&limits, stopped).is_some_and(|d| d <= Instant::now()) {
                    return;
                }
            }
        }
    }
}

/// hyper's connection with upgrades, as [`watch_connection`] asks it to finish.
trait SupportsGracefulShutdown {
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<I, S> SupportsGracefulShutdown for hyper::server::conn::http1::UpgradeableConnection<I, S>
where
    S: hyper::service::HttpService<Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S::ResBody: hyper::body::Body + 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        hyper::server::conn::http1::UpgradeableConnection::graceful_shutdown(self)
    }
}

/// The client connections open now, by age (ids grow).
#[derive(Clone)]
struct Connections(Arc<ConnectionTable>);

struct ConnectionTable {
    epoch: Instant,
    next: AtomicU64,
    open: Mutex<BTreeMap<u64, Arc<Link>>>,
}

impl Connections {
    fn new() -> Self {
        Connections(Arc::new(ConnectionTable {
            epoch: Instant::now(),
            next: AtomicU64::new(0),
            open: Mutex::new(BTreeMap::new()),
        }))
    }

    fn open(&self) -> Arc<Link> {
        let id = self.0.next.fetch_add(1, Ordering::Relaxed);
        let link = Arc::new(Link {
            id,
            epoch: self.0.epoch,
            busy: AtomicUsize::new(0),
            last_active: AtomicU64::new(self.now()),
            head_since: AtomicU64::new(0),
            receiving: AtomicBool::new(false),
            body_failed: AtomicBool::new(false),
            closing: Notify::new(),
        });
        self.0.open.lock().expect("lock").insert(id, link.clone());
        link
    }

    fn len(&self) -> usize {
        self.0.open.lock().expect("lock").len()
    }

    /// Closes the connection that has waited longest without a request; false when every
    /// connection has one in flight.
    fn close_longest_idle(&self) -> bool {
        let mut open = self.0.open.lock().expect("lock");
        let idle = open
            .values()
            .filter(|link| link.busy.load(Ordering::Relaxed) == 0)
            .min_by_key(|link| link.last_active.load(Ordering::Relaxed))
            .map(|link| link.id);
        match idle.and_then(|id| open.remove(&id)) {
            Some(link) => {
                // A permit: the connection closes even if it is not waiting right now.
                link.closing.notify_one();
                true
            }
            None => false,
        }
    }

    /// Milliseconds since the table was made, plus one (0 means "never").
    fn now(&self) -> u64 {
        self.0.epoch.elapsed().as_millis() as u64 + 1
    }
}

/// Frees a connection's place in the table when its task ends.
struct Slot(Connections, u64);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0 .0.open.lock().expect("lock").remove(&self.1);
    }
}

/// What is known of one client connection.
struct Link {
    id: u64,
    epoch: Instant,
    /// Requests in flight (a tunnel counts as one, for good).
    busy: AtomicUsize,
    /// When the last byte went either way, as [`Connections::now`].
    last_active: AtomicU64,
    /// When the first byte of a request head came, 0 when none is coming.
    head_since: AtomicU64,
    /// The request in flight's body is still coming from the client.
    receiving: AtomicBool,
    /// The request in flight's body was not valid HTTP (a malformed chunk, ...).
    body_failed: AtomicBool,
    /// Close now, to make room.
    closing: Notify,
}

impl Link {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    fn at(&self, millis: u64) -> Instant {
        self.epoch + Duration::from_millis(millis.saturating_sub(1))
    }

    /// Some bytes came from the client.
    fn read_some(&self) {
        let now = self.now();
        self.last_active.store(now, Ordering::Relaxed);
        if self.busy.load(Ordering::Relaxed) == 0 && self.head_since.load(Ordering::Relaxed) == 0 {
            self.head_since.store(now, Ordering::Relaxed);
        }
    }

    /// When this connection is to be closed, as things stand.
    fn deadline(&self, limits: &Limits, stopped: bool) -> Option<Instant> {
        let last_active = self.at(self.last_active.load(Ordering::Relaxed));
        if self.busy.load(Ordering::Relaxed) > 0 {
            // The app's timeout bounds a request in flight; after SIGTERM, a client that
            // stops sending its body does not hold the stop any longer than a slow head would.
            return (stopped && self.receiving.load(Ordering::Relaxed))
                .then(|| last_active + limits.header_timeout);
        }
        match (self.head_since.load(Ordering::Relaxed), stopped) {
            // Stopping: a half-sent head is not waited for.
            (since, true) if since != 0 => Some(Instant::now()),
            // Stopping, idle: hyper closes it; this bounds a client that does not read.
            (_, true) => Some(last_active + limits.header_timeout),
            (0, false) => Some(last_active + limits.idle_timeout),
            (since, false) => Some(self.at(since) + limits.header_timeout),
        }
    }
}

/// A request in flight on a connection, until its answer's body has been sent (or dropped).
struct InFlight(Arc<Link>);

impl InFlight {
    fn start(link: &Arc<Link>, empty_body: bool) -> Self {
        link.busy.fetch_add(1, Ordering::Relaxed);
        link.head_since.store(0, Ordering::Relaxed);
        link.receiving.store(!empty_body, Ordering::Relaxed);
        link.body_failed.store(false, Ordering::Relaxed);
        InFlight(link.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let link = &self.0;
        link.receiving.store(false, Ordering::Relaxed);
        link.last_active.store(link.now(), Ordering::Relaxed);
        link.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The client's request body on its way to the app: says when it has all come, or failed.
pub struct ToApp {
    body: Incoming,
    link: Arc<Link>,
}

impl hyper::body::Body for ToApp {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.link.receiving.store(false, Ordering::Relaxed),
            Poll::Ready(Some(Err(_))) => {
                self.link.body_failed.store(true, Ordering::Relaxed);
                self.link.receiving.store(false, Ordering::Relaxed);
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// An answer's body on its way to the client; the request stays in flight until it is done.
pub struct Served {
    body: Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for Served {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A client's socket, noting when bytes go through it.
struct Watched {
    stream: TcpStream,
    link: Arc<Link>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.link.read_some();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.wrote(&polled);
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.wrote(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl Watched {
    fn wrote(&self, polled: &Poll<std::io::Result<usize>>) {
        if matches!(polled, Poll::Ready(Ok(n)) if *n > 0) {
            self.link
                .last_active
                .store(self.link.now(), Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busy_answer_says_its_own_length() {
        let text = std::str::from_utf8(BUSY_ANSWER).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("content-length: {}\r\n", body.len())),
            "{text}"
        );
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"], "Service Unavailable");
    }

    #[test]
    fn connection_never_names_host_away() {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_static("example.test"));
        headers.insert(CONNECTION, HeaderValue::from_static("Host, X-Secret"));
        headers.insert("x-secret", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut headers);
        assert_eq!(headers.get(HOST).unwrap(), "example.test");
        assert!(!headers.contains_key("x-secret") && !headers.contains_key(CONNECTION));
    }
}
