//! The reverse proxy: every request must carry a valid `Otoroshi-State`; valid ones go to the
//! app without that header, bodies streamed both ways over a pooled keep-alive connection,
//! and come back with `Otoroshi-State-Resp`. Anything else gets a 401 and never reaches the app.

use crate::token::{Challenge, Rejection};
use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

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
/// How long in-flight requests may take to finish after SIGTERM.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

pub struct Proxy {
    challenge: Challenge,
    client: Client<HttpConnector, Incoming>,
    forward: u16,
}

impl Proxy {
    pub fn new(secret: &[u8], forward: u16) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Proxy {
            challenge: Challenge::new(secret),
            client,
            forward,
        }
    }

    async fn handle(&self, request: Request<Incoming>, client: SocketAddr) -> Response<Body> {
        let state = match self.challenge.verify(
            request
                .headers()
                .get("otoroshi-state")
                .map(HeaderValue::as_bytes),
        ) {
            Ok(state) => state,
            Err(rejection) => return rejected(&rejection),
        };
        let (mut parts, body) = request.into_parts();
        remove_hop_by_hop(&mut parts.headers);
        parts.headers.remove("otoroshi-state");
        add_forwarded(&mut parts.headers, client);
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
        match self.client.request(Request::from_parts(parts, body)).await {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                remove_hop_by_hop(&mut parts.headers);
                if let Ok(value) = HeaderValue::from_str(&self.challenge.sign_response(&state)) {
                    parts.headers.insert("otoroshi-state-resp", value);
                }
                Response::from_parts(parts, body.boxed())
            }
            Err(e) => json(
                StatusCode::BAD_GATEWAY,
                "Bad Gateway",
                &format!(
                    "the app on 127.0.0.1:{} does not answer ({})",
                    self.forward,
                    root_cause(&e)
                ),
            ),
        }
    }
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
/// period) before returning.
pub async fn serve(listener: TcpListener, proxy: Arc<Proxy>, shutdown: impl Future<Output = ()>) {
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.max_headers(MAX_HEADERS).max_buf_size(64 * 1024);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, client)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let proxy = proxy.clone();
                let service = service_fn(move |request| {
                    let proxy = proxy.clone();
                    async move { Ok::<_, Infallible>(proxy.handle(request, client).await) }
                });
                let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {}
    }
}
