//! The load benchmark's Rust floor: a reverse proxy with nothing in it but the HTTP
//! machinery Johi itself stands on.
//!
//! hyper's server (HTTP/1.1 and HTTP/2, as Johi's listener builds it), the whole request body
//! read before it is sent on (as Johi does, and as nginx does by default), and Johi's own
//! upstream transport ([`johi_server::upstream::Pool`]: keep-alive connections driven by the
//! request that uses them), with the response streamed back as it arrives. No routing,
//! validation, authentication, metering or audit.
//!
//! Measured beside nginx and Johi in one run (`bench/run.sh`), it splits Johi's distance
//! from nginx into what the Rust stack costs before any gateway work (floor ÷ nginx) and
//! what Johi's pipeline adds on top of it (Johi ÷ floor). It is a benchmark tool, not a
//! product: it answers every path by forwarding it, and a failure with a bare 502.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONNECTION, HOST, TRANSFER_ENCODING};
use http::{HeaderName, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Either, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use johi_server::upstream::{DrivenBody, Pool};
use tokio::net::TcpListener;

/// The response body: the upstream's, streamed, or empty for the floor's own 502.
type FloorBody = Either<ToTheEnd, Empty<Bytes>>;

/// The upstream's body, read to its very end.
///
/// [`DrivenBody`] gives its connection back to the pool when it is polled past its last
/// frame. hyper's server stops polling a body once its `Content-Length` is written, which
/// would close the upstream connection after every answer; so when the last frame is in,
/// this body reads on at once, which hands the connection back.
struct ToTheEnd(DrivenBody);

impl hyper::body::Body for ToTheEnd {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        let frame = std::task::ready!(std::pin::Pin::new(&mut self.0).poll_frame(cx));
        if matches!(frame, Some(Ok(_))) && self.0.is_end_stream() {
            let _ = std::pin::Pin::new(&mut self.0).poll_frame(cx);
        }
        std::task::Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.0.size_hint()
    }
}

/// Headers that describe one hop's connection, never forwarded (RFC 9110 §7.6.1); `Host`
/// is set to the upstream's own.
const HOP_BY_HOP: [HeaderName; 2] = [CONNECTION, TRANSFER_ENCODING];

/// Accepts connections and serves each on a task of its own, as Johi's listener does.
///
/// `upstream` is the upstream's base URL (`http://host:port`); the client's path and query
/// are appended to it. Returns only if the upstream URL is unusable.
pub async fn serve(listener: TcpListener, upstream: Uri) -> Result<(), String> {
    let authority = upstream
        .authority()
        .ok_or_else(|| format!("upstream {upstream} has no host"))?
        .clone();
    if upstream.scheme_str() != Some("http") {
        return Err(format!("upstream {upstream}: only http:// is supported"));
    }
    let host = http::HeaderValue::from_str(authority.as_str()).map_err(|e| e.to_string())?;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(connector);
    let pool = Arc::new(Pool::new(connector, Some(host)));
    let builder = Arc::new(Builder::new(TokioExecutor::new()));
    let authority = Arc::new(authority);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(_) => continue,
        };
        let _ = stream.set_nodelay(true);
        let (pool, builder, authority) = (pool.clone(), builder.clone(), authority.clone());
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let (pool, authority) = (pool.clone(), authority.clone());
                async move { Ok::<_, Infallible>(forward(request, &pool, &authority).await) }
            });
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Sends `request` to the upstream and streams its answer back; a bare 502 if that fails.
async fn forward(
    request: Request<Incoming>,
    pool: &Arc<Pool>,
    authority: &http::uri::Authority,
) -> Response<FloorBody> {
    match try_forward(request, pool, authority).await {
        Some(response) => response,
        None => {
            let mut response = Response::new(Either::Right(Empty::new()));
            *response.status_mut() = StatusCode::BAD_GATEWAY;
            response
        }
    }
}

async fn try_forward(
    request: Request<Incoming>,
    pool: &Arc<Pool>,
    authority: &http::uri::Authority,
) -> Option<Response<FloorBody>> {
    let (mut parts, body) = request.into_parts();
    let body = body.collect().await.ok()?.to_bytes();
    let path = parts.uri.path_and_query().cloned()?;
    let uri = Uri::builder()
        .scheme("http")
        .authority(authority.clone())
        .path_and_query(path)
        .build()
        .ok()?;
    for name in &HOP_BY_HOP {
        parts.headers.remove(name);
    }
    if let Some(host) = pool.host() {
        parts.headers.insert(HOST, host.clone());
    }
    parts.uri = uri.clone();
    parts.version = http::Version::HTTP_11;
    let upstream_request = Request::from_parts(parts, Full::new(body));
    let (mut lease, _reused) = pool.checkout(&uri).await.ok()?;
    let response = lease.send(upstream_request).await.ok()?;
    let (mut parts, body) = response.into_parts();
    for name in &HOP_BY_HOP {
        parts.headers.remove(name);
    }
    Some(Response::from_parts(
        parts,
        Either::Left(ToTheEnd(DrivenBody::new(body, lease))),
    ))
}
