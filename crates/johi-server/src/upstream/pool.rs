//! Keep-alive connections to one provider, driven by the request that uses them.
//!
//! hyper's pooled client runs every upstream connection as a task of its own: each request,
//! each response head and each body chunk then crosses between that task and the request's
//! task through channels, with a task wake-up per crossing. A streamed answer of a dozen
//! events paid a dozen such round trips. Here an HTTP/1.1 connection is instead *lent* to
//! one exchange at a time, and the exchange polls it itself ([`Lease::drive`], called by
//! [`DrivenBody`] whenever the body has nothing ready): reading the socket, decoding a chunk
//! and handing it over is a function call, and every event already received is relayed in
//! the same poll. When the body has been read to its end the connection goes back to the
//! pool; if the exchange is dropped first (the client went away), the connection is closed,
//! which cancels the upstream request.
//!
//! An upstream that negotiates HTTP/2 over TLS (ALPN) gets one multiplexed connection,
//! driven by its own task as usual, shared by all requests to that provider.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, Uri};
use http_body::{Body as HttpBody, Frame};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2, TrySendError};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::{Connection as _, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tower::ServiceExt;

/// The byte stream under an upstream connection: TCP, or TLS over TCP.
type Stream = MaybeHttpsStream<TokioIo<TcpStream>>;
/// The request body type sent upstream: the whole (already built) JSON body.
pub type UpstreamBody = Full<Bytes>;
type H1Connection = http1::Connection<Stream, UpstreamBody>;
type H1Sender = http1::SendRequest<UpstreamBody>;
type H2Sender = http2::SendRequest<UpstreamBody>;

/// Error type of connecting (TCP, TLS) as the connector reports it.
pub type ConnectError = Box<dyn std::error::Error + Send + Sync>;

/// Idle connections kept per provider; more than this many concurrent requests to one
/// provider still work, the surplus connections are just closed when they finish.
const MAX_IDLE: usize = 512;

/// How long an unused connection is kept (upstreams commonly close theirs after 60–120 s).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The connections to one provider.
pub struct Pool {
    connector: HttpsConnector<HttpConnector>,
    /// HTTP/1.1 connections not lent to anyone, the most recently used last.
    idle: Mutex<Vec<Idle>>,
    /// The provider's HTTP/2 connection, once one was negotiated.
    multiplexed: Mutex<Option<H2Sender>>,
    /// `Host` for HTTP/1.1 requests (the provider's own name, never the client's).
    host: Option<HeaderValue>,
}

struct Idle {
    sender: H1Sender,
    connection: Box<H1Connection>,
    since: Instant,
}

impl Pool {
    /// A pool that opens its connections with `connector`; `host` is the upstream's
    /// `Host` header value.
    pub fn new(connector: HttpsConnector<HttpConnector>, host: Option<HeaderValue>) -> Pool {
        Pool {
            connector,
            idle: Mutex::new(Vec::new()),
            multiplexed: Mutex::new(None),
            host,
        }
    }

    /// The `Host` header value for HTTP/1.1 requests to this upstream.
    pub fn host(&self) -> Option<&HeaderValue> {
        self.host.as_ref()
    }

    fn idle(&self) -> MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn multiplexed(&self) -> MutexGuard<'_, Option<H2Sender>> {
        self.multiplexed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A connection for one exchange: a live idle one if there is one, else a new one.
    /// The flag says whether it was reused (a reused connection may turn out to have been
    /// closed by the upstream just now; see [`Lease::send`]).
    pub async fn checkout(self: &Arc<Self>, uri: &Uri) -> Result<(Lease, bool), ConnectError> {
        if let Some(sender) = self.multiplexed().as_ref() {
            if !sender.is_closed() {
                return Ok((Lease::Shared(sender.clone()), true));
            }
        }
        loop {
            let Some(idle) = self.idle().pop() else { break };
            if idle.since.elapsed() > IDLE_TIMEOUT {
                continue;
            }
            let mut lease = Exclusive {
                sender: idle.sender,
                connection: Some(idle.connection),
                pool: Arc::clone(self),
            };
            // Polling the idle connection once notices an upstream that closed it meanwhile.
            if poll_fn(|cx| Poll::Ready(lease.is_ready(cx))).await {
                return Ok((Lease::Exclusive(lease), true));
            }
        }
        // Boxed: the connect future (TCP, TLS, handshakes) is large and rarely needed, and
        // would otherwise be moved around with every request's future.
        Ok((Box::pin(self.connect(uri)).await?, false))
    }

    /// Opens a new connection (TCP, TLS with ALPN) and shakes hands in the negotiated protocol.
    pub async fn connect(self: &Arc<Self>, uri: &Uri) -> Result<Lease, ConnectError> {
        let stream = self.connector.clone().oneshot(uri.clone()).await?;
        if stream.connected().is_negotiated_h2() {
            let (sender, connection) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake::<_, UpstreamBody>(stream)
                .await?;
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%error, "upstream HTTP/2 connection ended");
                }
            });
            *self.multiplexed() = Some(sender.clone());
            return Ok(Lease::Shared(sender));
        }
        let (sender, connection) = http1::Builder::new().handshake(stream).await?;
        Ok(Lease::Exclusive(Exclusive {
            sender,
            connection: Some(Box::new(connection)),
            pool: Arc::clone(self),
        }))
    }

    fn put_back(&self, sender: H1Sender, connection: Box<H1Connection>) {
        let mut idle = self.idle();
        if idle.len() < MAX_IDLE {
            idle.push(Idle {
                sender,
                connection,
                since: Instant::now(),
            });
        }
    }
}

/// A connection lent to one exchange.
pub enum Lease {
    /// HTTP/1.1: this exchange's alone until its response body has been read.
    Exclusive(Exclusive),
    /// HTTP/2: shared, driven by its own task.
    Shared(H2Sender),
}

/// An HTTP/1.1 connection and the handle to send on it.
pub struct Exclusive {
    sender: H1Sender,
    /// `None` once the connection has ended (closed, or failed). Boxed: the connection
    /// state (buffers, TLS session) is kilobytes, and the lease is moved along with the
    /// response through several futures.
    connection: Option<Box<H1Connection>>,
    pool: Arc<Pool>,
}

impl Exclusive {
    /// Lets the connection do what it can: write the request, read the socket, decode
    /// what arrived and hand it to the response (head or body) waiting for it.
    fn drive(&mut self, cx: &mut Context<'_>) {
        if let Some(connection) = self.connection.as_mut() {
            if let Poll::Ready(result) = Pin::new(&mut **connection).poll(cx) {
                if let Err(error) = result {
                    tracing::debug!(%error, "upstream connection ended");
                }
                self.connection = None;
            }
        }
    }

    /// Whether the connection is alive and idle, ready for a request.
    fn is_ready(&mut self, cx: &mut Context<'_>) -> bool {
        self.drive(cx);
        self.connection.is_some() && self.sender.is_ready()
    }
}

impl Lease {
    /// Sends the request and waits for the response head, driving the connection meanwhile.
    /// When the connection turns out to be closed before the request was written, the
    /// request is handed back in the error, so that it can be sent on another connection.
    pub async fn send(
        &mut self,
        request: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, TrySendError<Request<UpstreamBody>>> {
        match self {
            Lease::Shared(sender) => sender.try_send_request(request).await,
            Lease::Exclusive(exclusive) => {
                let mut response = std::pin::pin!(exclusive.sender.try_send_request(request));
                poll_fn(|cx| {
                    if let Poll::Ready(result) = response.as_mut().poll(cx) {
                        return Poll::Ready(result);
                    }
                    exclusive.drive(cx);
                    response.as_mut().poll(cx)
                })
                .await
            }
        }
    }

    /// Drives the connection (see [`Exclusive::drive`]); a shared one drives itself.
    pub fn drive(&mut self, cx: &mut Context<'_>) {
        if let Lease::Exclusive(exclusive) = self {
            exclusive.drive(cx);
        }
    }

    /// Gives the connection back after the response was read to its end; it joins the idle
    /// ones if it is ready for another request.
    pub fn release(self, cx: &mut Context<'_>) {
        if let Lease::Exclusive(mut exclusive) = self {
            if exclusive.is_ready(cx) {
                if let Some(connection) = exclusive.connection.take() {
                    exclusive.pool.put_back(exclusive.sender, connection);
                }
            }
        }
    }
}

/// A response body read through its lease: polling the body also drives the connection it
/// arrives on, and reading it to the end gives the connection back to the pool. Dropping it
/// before the end closes the connection, which is how a cancelled exchange cancels upstream.
pub struct DrivenBody {
    body: Incoming,
    lease: Option<Lease>,
}

impl DrivenBody {
    /// `body`, arriving on `lease`'s connection.
    pub fn new(body: Incoming, lease: Lease) -> DrivenBody {
        DrivenBody {
            body,
            lease: Some(lease),
        }
    }

    fn ended(
        &mut self,
        cx: &mut Context<'_>,
        frame: Option<Result<Frame<Bytes>, hyper::Error>>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match frame {
            None => {
                if let Some(lease) = self.lease.take() {
                    lease.release(cx);
                }
            }
            // A broken body leaves the connection in an unknown state: never reuse it.
            Some(Err(_)) => self.lease = None,
            Some(Ok(_)) => {}
        }
        Poll::Ready(frame)
    }
}

impl HttpBody for DrivenBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            return this.ended(cx, frame);
        }
        let Some(lease) = this.lease.as_mut() else {
            return Poll::Pending;
        };
        lease.drive(cx);
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(frame) => this.ended(cx, frame),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
