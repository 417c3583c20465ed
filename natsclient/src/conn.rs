//! One connection: socket set-up, handshake, the read path and the write path.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{Instant, Sleep};

use crate::pool::{Cursor, Pool, Server};
use crate::proto::{self, Frame, Info};
use crate::{Error, Event, Handler};

/// Reads per poll before yielding to other tasks.
const READ_BUDGET: usize = 32;
/// Size of the per-thread read buffer.
const SCRATCH: usize = 64 * 1024;
/// Bytes queued under backpressure before publishes are refused.
const MAX_PENDING: usize = 8 * 1024 * 1024;

thread_local! {
    static SCRATCH_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH].into_boxed_slice());
}

/// Settings shared by all connections of a fleet.
#[derive(Debug, Clone)]
pub struct Config {
    pub pool: Arc<Pool>,
    /// User and password for CONNECT (a URL's own credentials take precedence).
    pub user: Option<(String, String)>,
    /// TLS: the server must offer it, and it is verified as this configuration says.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// TCP connect, INFO, TLS, CONNECT and the first PONG must all happen within this time.
    pub handshake_timeout: Duration,
    /// How often the client pings the server.
    pub ping_interval: Duration,
    /// Unanswered pings after which the connection counts as stale and is replaced.
    pub max_pings_out: u8,
    /// Bytes of publishes kept while disconnected (Choria: 10 KiB).
    pub reconnect_buffer: usize,
    /// Upper bound of the reconnect backoff (Choria: 20 s).
    pub max_backoff: Duration,
    /// Whether the server may deliver this connection's own publishes back to it.
    pub echo: bool,
    /// Caps handshakes in flight across every connection sharing this configuration, so that
    /// a fleet reconnecting at once after a broker restart does not overflow the server's
    /// accept queue (a dropped SYN costs a 1 s retransmit). The handshake timeout starts once a
    /// permit is held.
    pub in_flight: Option<Arc<tokio::sync::Semaphore>>,
}

impl Config {
    pub fn new(pool: Arc<Pool>) -> Config {
        Config {
            pool,
            user: None,
            tls: None,
            handshake_timeout: Duration::from_secs(5),
            ping_interval: Duration::from_secs(120),
            max_pings_out: 2,
            reconnect_buffer: 10 * 1024,
            max_backoff: Duration::from_secs(20),
            echo: false,
            in_flight: None,
        }
    }
}

struct Subscription {
    sid: u64,
    subject: Box<str>,
    queue: Option<Box<str>>,
}

/// A NATS connection owned and driven by one task.
pub struct Client {
    config: Arc<Config>,
    name: Box<str>,
    bind: Option<IpAddr>,
    cursor: Cursor,
    conn: Option<Box<Conn>>,
    subs: Vec<Subscription>,
    next_sid: u64,
    /// Publishes made while disconnected, replayed after the next handshake.
    parked: Vec<Vec<u8>>,
    parked_bytes: usize,
    max_payload: usize,
}

impl Client {
    /// A client that is not connected yet.
    pub fn new(config: Arc<Config>, name: &str, bind: Option<IpAddr>) -> Client {
        Client {
            config,
            name: name.into(),
            bind,
            cursor: Cursor::default(),
            conn: None,
            subs: Vec::new(),
            next_sid: 1,
            parked: Vec::new(),
            parked_bytes: 0,
            max_payload: 0,
        }
    }

    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// The server of the current connection.
    pub fn server(&self) -> Option<&Server> {
        self.conn.as_ref().map(|c| &*c.io.server)
    }

    /// `max_payload` of the current (or last) server, 0 before the first connection.
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// Server PINGs answered on the current connection.
    pub fn server_pings(&self) -> u64 {
        self.conn.as_ref().map_or(0, |c| c.server_pings)
    }

    /// One connection attempt to the next server of the pool.
    pub async fn try_connect(&mut self) -> Result<(), Error> {
        let _permit = match &self.config.in_flight {
            Some(limit) => Some(
                Arc::clone(limit)
                    .acquire_owned()
                    .await
                    .map_err(|_| Error::NotConnected)?,
            ),
            None => None,
        };
        let server = self.cursor.next(&self.config.pool);
        let timeout = self.config.handshake_timeout;
        // The subscriptions go out with CONNECT, before the PING that ends the handshake.
        let mut subs = Vec::new();
        for s in &self.subs {
            proto::sub_frame(&mut subs, &s.subject, s.queue.as_deref(), s.sid);
        }
        let handshake = Box::pin(handshake(
            &self.config,
            Arc::clone(&server),
            &self.name,
            self.bind,
            &subs,
        ));
        let (stream, info, leftover) = match tokio::time::timeout(timeout, handshake).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(Error::HandshakeTimeout {
                    server: server.url.to_string(),
                    timeout,
                });
            }
        };
        if !info.connect_urls.is_empty() {
            self.config
                .pool
                .discover(&info.connect_urls, self.config.tls.is_some());
        }
        self.max_payload = info.max_payload;
        let mut conn = Box::new(Conn {
            io: Io {
                stream,
                pending: VecDeque::new(),
                pending_bytes: 0,
                offset: 0,
                error: None,
                server,
                max_payload: info.max_payload,
            },
            leftover,
            pings_out: 0,
            pongs: 0,
            server_pings: 0,
            last_error: None,
            ping: Box::pin(tokio::time::sleep(self.config.ping_interval)),
        });
        for frame in std::mem::take(&mut self.parked) {
            conn.io.send(frame);
        }
        self.parked_bytes = 0;
        self.cursor.connected();
        self.conn = Some(conn);
        Ok(())
    }

    /// Connects, retrying with backoff, until connected (true) or `stop` (false). Failed
    /// attempts are reported as [`Event::ConnectFailed`].
    pub async fn connect<H: Handler>(
        &mut self,
        handler: &mut H,
        stop: impl Future<Output = ()>,
    ) -> bool {
        let mut stop = std::pin::pin!(stop);
        tokio::select! {
            biased;
            () = &mut stop => false,
            () = self.connect_loop(handler, false) => true,
        }
    }

    async fn connect_loop<H: Handler>(&mut self, handler: &mut H, reconnect: bool) {
        loop {
            match self.try_connect().await {
                Ok(()) => {
                    if let Some(c) = &self.conn {
                        handler.event(Event::Connected {
                            server: &c.io.server,
                            reconnect,
                        });
                    }
                    return;
                }
                Err(error) => {
                    handler.event(Event::ConnectFailed { error: &error });
                    let delay = self
                        .cursor
                        .failed(&self.config.pool, self.config.max_backoff);
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                }
            }
        }
    }

    /// Subscribes `subject` (with an optional queue group); returns the subscription id that
    /// messages carry. Resubscribed on every reconnect, in the handshake: subscriptions made
    /// before [`Client::connect`] are held by the server once it returns.
    pub fn subscribe(&mut self, subject: &str, queue: Option<&str>) -> Result<u64, Error> {
        if !proto::framing_safe(subject) {
            return Err(Error::InvalidSubject(subject.to_owned()));
        }
        if let Some(q) = queue
            && !proto::framing_safe(q)
        {
            return Err(Error::InvalidSubject(q.to_owned()));
        }
        let sid = self.next_sid;
        self.next_sid += 1;
        if let Some(c) = &mut self.conn {
            let mut frame = Vec::new();
            proto::sub_frame(&mut frame, subject, queue, sid);
            c.io.send(frame);
        }
        self.subs.push(Subscription {
            sid,
            subject: subject.into(),
            queue: queue.map(Into::into),
        });
        Ok(sid)
    }

    /// Ends a subscription.
    pub fn unsubscribe(&mut self, sid: u64) {
        self.subs.retain(|s| s.sid != sid);
        if let Some(c) = &mut self.conn {
            let mut frame = Vec::new();
            proto::unsub_frame(&mut frame, sid);
            c.io.send(frame);
        }
    }

    /// Publishes; while disconnected the frame waits in the bounded reconnect buffer.
    pub fn publish(
        &mut self,
        subject: &str,
        reply: Option<&str>,
        payload: &[u8],
    ) -> Result<(), Error> {
        if let Some(c) = &mut self.conn {
            return Outbox { io: &mut c.io }.publish(subject, reply, payload);
        }
        check_publish(subject, reply, payload, self.max_payload)?;
        let frame = proto::pub_frame(subject, reply, payload);
        if self.parked_bytes + frame.len() > self.config.reconnect_buffer {
            return Err(Error::BufferFull(self.parked_bytes));
        }
        self.parked_bytes += frame.len();
        self.parked.push(frame);
        Ok(())
    }

    /// Sends PING and serves the connection until the PONG: everything sent before has been
    /// processed by the server. Messages arriving meanwhile go to `handler`.
    pub async fn flush<H: Handler>(&mut self, handler: &mut H) -> Result<(), Error> {
        let Some(c) = &mut self.conn else {
            return Err(Error::NotConnected);
        };
        c.io.send(b"PING\r\n".to_vec());
        let target = c.pongs + 1;
        let timeout = self.config.handshake_timeout;
        let served = std::future::poll_fn(|cx| self.poll_conn(cx, handler, Some(target)));
        match tokio::time::timeout(timeout, served).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                self.lost(handler, &e);
                Err(e)
            }
            Err(_) => Err(Error::FlushTimeout(timeout)),
        }
    }

    /// Serves the connection until `stop`: dispatches messages, answers server PINGs, pings the
    /// server, and reconnects (with backoff, resubscribing) whenever the connection is lost.
    pub async fn run<H: Handler>(&mut self, handler: &mut H, stop: impl Future<Output = ()>) {
        let mut stop = std::pin::pin!(stop);
        loop {
            if self.conn.is_none() {
                let reconnect = Box::pin(self.connect_loop(handler, true));
                tokio::select! {
                    biased;
                    () = &mut stop => return,
                    () = reconnect => {}
                }
                continue;
            }
            let outcome = std::future::poll_fn(|cx| {
                if stop.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(None);
                }
                self.poll_conn(cx, handler, None).map(Result::err)
            })
            .await;
            match outcome {
                None => return,
                Some(e) => self.lost(handler, &e),
            }
        }
    }

    /// Unsubscribes everything, waits for the server to have processed it (and everything
    /// published before), then closes the connection.
    pub async fn drain<H: Handler>(&mut self, handler: &mut H) -> Result<(), Error> {
        let sids: Vec<u64> = self.subs.iter().map(|s| s.sid).collect();
        for sid in sids {
            self.unsubscribe(sid);
        }
        let flushed = self.flush(handler).await;
        self.close().await;
        flushed
    }

    /// Closes the connection at once (TLS sends its close_notify).
    pub async fn close(&mut self) {
        if let Some(mut c) = self.conn.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), c.io.stream.shutdown()).await;
        }
    }

    fn lost<H: Handler>(&mut self, handler: &mut H, error: &Error) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        handler.event(Event::Disconnected {
            server: &conn.io.server,
            error,
        });
        // Keep whole publishes that were never written, up to the reconnect buffer.
        let Io {
            mut pending,
            offset,
            ..
        } = conn.io;
        if offset > 0 {
            pending.pop_front();
        }
        let mut dropped = 0usize;
        for frame in pending {
            if !frame.starts_with(b"PUB ") {
                continue;
            }
            if self.parked_bytes + frame.len() <= self.config.reconnect_buffer {
                self.parked_bytes += frame.len();
                self.parked.push(frame);
            } else {
                dropped += frame.len();
            }
        }
        if dropped > 0 {
            tracing::debug!(
                name = %self.name,
                dropped_bytes = dropped,
                "reconnect buffer full, publishes dropped"
            );
        }
    }

    fn poll_conn<H: Handler>(
        &mut self,
        cx: &mut Context<'_>,
        handler: &mut H,
        want_pongs: Option<u64>,
    ) -> Poll<Result<(), Error>> {
        let Client {
            conn, subs, config, ..
        } = self;
        let Some(conn) = conn.as_mut() else {
            return Poll::Ready(Err(Error::NotConnected));
        };
        for _ in 0..READ_BUDGET {
            let mut progressed = false;
            if let Poll::Ready(Err(e)) = conn.io.poll_pending(cx) {
                return Poll::Ready(Err(conn.io_error(e)));
            }
            if let Some(e) = conn.io.error.take() {
                return Poll::Ready(Err(conn.io_error(e)));
            }
            if conn.ping.as_mut().poll(cx).is_ready() {
                if conn.pings_out >= config.max_pings_out {
                    return Poll::Ready(Err(Error::Stale {
                        server: conn.io.server.url.to_string(),
                        pings: conn.pings_out,
                    }));
                }
                conn.pings_out += 1;
                conn.io.send(b"PING\r\n".to_vec());
                conn.ping
                    .as_mut()
                    .reset(Instant::now() + config.ping_interval);
                progressed = true;
            }
            let read = SCRATCH_BUF.with_borrow_mut(|scratch| {
                let mut rb = ReadBuf::new(scratch);
                match Pin::new(&mut conn.io.stream).poll_read(cx, &mut rb) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Err(e)) => Poll::Ready(Err(conn.io_error(e))),
                    Poll::Ready(Ok(())) => {
                        let data = rb.filled();
                        if data.is_empty() {
                            return Poll::Ready(Err(Error::Closed {
                                server: conn.io.server.url.to_string(),
                                last_error: conn.last_error.as_deref().map(str::to_owned),
                            }));
                        }
                        Poll::Ready(conn.on_data(data, handler, config, subs))
                    }
                }
            });
            match read {
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => progressed = true,
                Poll::Pending => {}
            }
            if let Some(target) = want_pongs
                && conn.pongs >= target
            {
                // Whatever the handler queued must go out too.
                if let Poll::Ready(Err(e)) = conn.io.poll_pending(cx) {
                    return Poll::Ready(Err(conn.io_error(e)));
                }
                return Poll::Ready(Ok(()));
            }
            if !progressed {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

fn check_publish(
    subject: &str,
    reply: Option<&str>,
    payload: &[u8],
    max_payload: usize,
) -> Result<(), Error> {
    if !proto::framing_safe(subject) {
        return Err(Error::InvalidSubject(subject.to_owned()));
    }
    if let Some(r) = reply
        && !proto::framing_safe(r)
    {
        return Err(Error::InvalidSubject(r.to_owned()));
    }
    if max_payload > 0 && payload.len() > max_payload {
        return Err(Error::MaxPayload {
            size: payload.len(),
            max: max_payload,
        });
    }
    Ok(())
}

/// Publishing from inside [`Handler::message`], on the connection that delivered the message.
pub struct Outbox<'a> {
    io: &'a mut Io,
}

impl Outbox<'_> {
    /// Writes a PUB straight to the socket (queued only if the socket is full).
    pub fn publish(
        &mut self,
        subject: &str,
        reply: Option<&str>,
        payload: &[u8],
    ) -> Result<(), Error> {
        check_publish(subject, reply, payload, self.io.max_payload)?;
        if self.io.pending_bytes > MAX_PENDING {
            return Err(Error::BufferFull(self.io.pending_bytes));
        }
        self.io.send(proto::pub_frame(subject, reply, payload));
        Ok(())
    }

    /// The server this connection is on.
    pub fn server(&self) -> &Server {
        &self.io.server
    }
}

struct Conn {
    io: Io,
    /// The start of a frame split across reads; empty (no allocation) otherwise.
    leftover: Vec<u8>,
    pings_out: u8,
    pongs: u64,
    server_pings: u64,
    last_error: Option<Box<str>>,
    ping: Pin<Box<Sleep>>,
}

impl Conn {
    fn io_error(&self, e: io::Error) -> Error {
        Error::Io {
            server: self.io.server.url.to_string(),
            source: e,
        }
    }

    fn on_data<H: Handler>(
        &mut self,
        data: &[u8],
        handler: &mut H,
        config: &Config,
        subs: &[Subscription],
    ) -> Result<(), Error> {
        if self.leftover.is_empty() {
            let used = self.parse_all(data, handler, config, subs)?;
            if used < data.len() {
                self.leftover.extend_from_slice(&data[used..]);
            }
        } else {
            let mut buf = std::mem::take(&mut self.leftover);
            buf.extend_from_slice(data);
            let used = self.parse_all(&buf, handler, config, subs)?;
            if used < buf.len() {
                buf.drain(..used);
                self.leftover = buf;
            }
        }
        Ok(())
    }

    fn parse_all<H: Handler>(
        &mut self,
        buf: &[u8],
        handler: &mut H,
        config: &Config,
        subs: &[Subscription],
    ) -> Result<usize, Error> {
        let mut pos = 0;
        loop {
            let parsed = proto::parse(&buf[pos..]).map_err(|error| Error::Protocol {
                server: self.io.server.url.to_string(),
                error,
            })?;
            let Some((frame, used)) = parsed else {
                return Ok(pos);
            };
            pos += used;
            self.dispatch(frame, handler, config, subs)?;
        }
    }

    fn dispatch<H: Handler>(
        &mut self,
        frame: Frame<'_>,
        handler: &mut H,
        config: &Config,
        subs: &[Subscription],
    ) -> Result<(), Error> {
        match frame {
            Frame::Msg(msg) => {
                // A message for a subscription already ended (in flight at UNSUB) is dropped.
                if subs.iter().any(|s| s.sid == msg.sid) {
                    handler.message(msg, &mut Outbox { io: &mut self.io });
                }
            }
            Frame::Ping => {
                self.server_pings += 1;
                self.io.send(b"PONG\r\n".to_vec());
            }
            Frame::Pong => {
                self.pings_out = 0;
                self.pongs += 1;
            }
            Frame::Ok => {}
            Frame::Err(message) => {
                handler.event(Event::ServerError {
                    server: &self.io.server,
                    message,
                });
                self.last_error = Some(message.into());
            }
            Frame::Info(json) => {
                let info: Info = serde_json::from_slice(json).map_err(|e| Error::Protocol {
                    server: self.io.server.url.to_string(),
                    error: proto::ProtocolError(format!("INFO is not valid JSON: {e}")),
                })?;
                if info.max_payload > 0 {
                    self.io.max_payload = info.max_payload;
                }
                if !info.connect_urls.is_empty() {
                    config
                        .pool
                        .discover(&info.connect_urls, config.tls.is_some());
                }
                if info.ldm {
                    handler.event(Event::LameDuck {
                        server: &self.io.server,
                    });
                }
            }
        }
        Ok(())
    }
}

/// The write side: frames go straight to the socket; only what the socket does not take waits.
struct Io {
    stream: Stream,
    pending: VecDeque<Vec<u8>>,
    pending_bytes: usize,
    /// Bytes of the first pending frame already written.
    offset: usize,
    /// A write error seen outside a poll, reported by the next poll.
    error: Option<io::Error>,
    server: Arc<Server>,
    max_payload: usize,
}

impl Io {
    fn send(&mut self, frame: Vec<u8>) {
        self.pending_bytes += frame.len();
        self.pending.push_back(frame);
        if self.pending.len() == 1 {
            // Nothing queued before: try the socket now. The task's own waker is registered by
            // the next poll of the connection, which also sees any error kept here.
            let mut cx = Context::from_waker(Waker::noop());
            if let Poll::Ready(Err(e)) = self.poll_pending(&mut cx) {
                self.error = Some(e);
            }
        }
    }

    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(front) = self.pending.front() {
            match Pin::new(&mut self.stream).poll_write(cx, &front[self.offset..]) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    self.offset += n;
                    self.pending_bytes -= n;
                    if self.offset == front.len() {
                        self.pending.pop_front();
                        self.offset = 0;
                    }
                }
            }
        }
        if self.pending.capacity() > 0 {
            self.pending = VecDeque::new();
        }
        Pin::new(&mut self.stream).poll_flush(cx)
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// TCP connect, INFO, optional TLS, CONNECT + PING, and the PONG (or `-ERR`).
async fn handshake(
    config: &Config,
    server: Arc<Server>,
    name: &str,
    bind: Option<IpAddr>,
    subs: &[u8],
) -> Result<(Stream, Info, Vec<u8>), Error> {
    let url = || server.url.to_string();
    let io_err = |source: io::Error| Error::Io {
        server: url(),
        source,
    };
    let proto_err = |error: proto::ProtocolError| Error::Protocol {
        server: url(),
        error,
    };
    let addr = resolve(&server, bind).await.map_err(io_err)?;
    let socket = socket(addr, bind).map_err(io_err)?;
    let mut tcp = socket.connect(addr).await.map_err(io_err)?;
    let mut buf = Vec::new();
    let mut info: Info = loop {
        if let Some((frame, used)) = proto::parse(&buf).map_err(proto_err)? {
            match frame {
                Frame::Info(json) => {
                    let info = serde_json::from_slice(json).map_err(|e| {
                        proto_err(proto::ProtocolError(format!("INFO is not valid JSON: {e}")))
                    })?;
                    buf.drain(..used);
                    break info;
                }
                Frame::Err(message) => {
                    return Err(Error::Server {
                        server: url(),
                        message: message.to_owned(),
                    });
                }
                other => {
                    return Err(proto_err(proto::ProtocolError(format!(
                        "expected INFO, got {other:?}"
                    ))));
                }
            }
        }
        read_more(&mut tcp, &mut buf).await.map_err(io_err)?;
    };
    let mut stream = match (&config.tls, info.tls_required) {
        (Some(tls), true) => {
            let connector = tokio_rustls::TlsConnector::from(Arc::clone(tls));
            let dns =
                rustls::pki_types::ServerName::try_from(server.host.clone()).map_err(|e| {
                    Error::Tls {
                        server: url(),
                        source: io::Error::new(io::ErrorKind::InvalidInput, e),
                    }
                })?;
            let tls = connector
                .connect(dns, tcp)
                .await
                .map_err(|source| Error::Tls {
                    server: url(),
                    source,
                })?;
            Stream::Tls(Box::new(tls))
        }
        (None, true) => return Err(Error::TlsRequired { server: url() }),
        (Some(_), false) => return Err(Error::TlsUnavailable { server: url() }),
        (None, false) => Stream::Plain(tcp),
    };
    let user = server
        .user
        .as_ref()
        .or(config.user.as_ref())
        .map(|(u, p)| (u.as_str(), p.as_str()));
    let connect = proto::connect_frame(name, user, config.tls.is_some(), config.echo, subs);
    stream.write_all(&connect).await.map_err(io_err)?;
    stream.flush().await.map_err(io_err)?;
    // An -ERR before the PONG is fatal only if the server then closes (authorization); one
    // about a subscription (an invalid subject) leaves the connection up.
    let mut server_error: Option<String> = None;
    loop {
        while let Some((frame, used)) = proto::parse(&buf).map_err(proto_err)? {
            match frame {
                Frame::Pong => {
                    buf.drain(..used);
                    return Ok((stream, info, buf));
                }
                Frame::Ping => {
                    stream.write_all(b"PONG\r\n").await.map_err(io_err)?;
                }
                Frame::Err(message) => {
                    tracing::debug!(server = %server.url, error = message, "-ERR during the handshake");
                    server_error = Some(message.to_owned());
                }
                Frame::Info(json) => {
                    if let Ok(newer) = serde_json::from_slice::<Info>(json) {
                        info = newer;
                    }
                }
                Frame::Ok | Frame::Msg(_) => {}
            }
            buf.drain(..used);
        }
        if let Err(e) = read_more(&mut stream, &mut buf).await {
            return Err(match server_error {
                Some(message) => Error::Server {
                    server: url(),
                    message,
                },
                None => io_err(e),
            });
        }
    }
}

async fn read_more<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> io::Result<()> {
    let mut chunk = [0u8; 4096];
    let n = s.read(&mut chunk).await?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the server closed the connection during the handshake",
        ));
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

async fn resolve(server: &Server, bind: Option<IpAddr>) -> io::Result<SocketAddr> {
    let mut addrs = tokio::net::lookup_host((server.host.as_str(), server.port)).await?;
    let want_v4 = bind.map(|b| b.is_ipv4());
    addrs
        .find(|a| want_v4.is_none_or(|v4| a.is_ipv4() == v4))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} has no address of the source address' family",
                    server.host
                ),
            )
        })
}

/// A non-blocking TCP socket with TCP_NODELAY and, when a source address is chosen,
/// IP_BIND_ADDRESS_NO_PORT set before `bind()`: the kernel then picks the source port at
/// `connect()` by the whole 4-tuple instead of searching for a port free for every destination
/// (which is slow while a stopped fleet's sockets sit in TIME_WAIT).
pub(crate) fn socket(addr: SocketAddr, bind: Option<IpAddr>) -> io::Result<TcpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_nonblocking(true)?;
    s.set_tcp_nodelay(true)?;
    if let Some(ip) = bind {
        set_bind_address_no_port(&s)?;
        s.bind(&SocketAddr::new(ip, 0).into())?;
    }
    Ok(TcpSocket::from_std_stream(std::net::TcpStream::from(s)))
}

/// Neither socket2 nor rustix exposes IP_BIND_ADDRESS_NO_PORT, so it is set through libc.
#[allow(unsafe_code)]
fn set_bind_address_no_port(s: &socket2::Socket) -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let one: libc::c_int = 1;
    // SAFETY: the descriptor is an open socket borrowed for the call; the option value points to
    // a c_int that lives across the call, and its exact size is passed.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&raw const one).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(unsafe_code)]
    fn bind_address_no_port(s: &impl std::os::fd::AsRawFd) -> libc::c_int {
        let mut v: libc::c_int = -1;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: valid descriptor; `v` and `len` outlive the call and describe a c_int.
        let rc = unsafe {
            libc::getsockopt(
                s.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&raw mut v).cast(),
                &raw mut len,
            )
        };
        assert_eq!(rc, 0, "{}", io::Error::last_os_error());
        v
    }

    #[tokio::test]
    async fn sockets_bound_to_a_source_address_defer_the_port_and_disable_nagle() {
        let dest: SocketAddr = "127.0.0.1:4222".parse().unwrap();
        let bound = socket(dest, Some("127.0.0.2".parse().unwrap())).unwrap();
        assert_eq!(bind_address_no_port(&bound), 1);
        assert!(bound.nodelay().unwrap());
        // The port is not chosen at bind time.
        assert_eq!(bound.local_addr().unwrap().port(), 0);
        let unbound = socket(dest, None).unwrap();
        assert_eq!(bind_address_no_port(&unbound), 0);
        assert!(unbound.nodelay().unwrap());
    }
}
