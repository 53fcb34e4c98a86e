//! The tiny_http adapter: threads turning sockets into [`Request`]s for
//! [`App::handle`], with a body limit and socket timeouts.
//!
//! Two kinds of threads answer. A few *intake* threads take every request
//! from tiny_http's queue, up to [`BATCH`] at a time. Status reports whose
//! body is already in memory they answer themselves: the batch's reports go
//! to the store together and one wait for the disk covers them all, where a
//! worker per report paid a sleep and a wake-up each (measured: a third more
//! reports per second on 2 cores). Their answers are written only as far as
//! that cannot block. Everything else — the page, pings, alerts, large or
//! slow bodies, and the rest of an answer a client is slow to read — goes to
//! the pool of `workers`, which may wait on a client for as long as the
//! client timeout allows without holding up anyone's reports.

use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{App, Request, Response};
use crate::config::Cidr;
use crate::error::{Error, Result};
use crate::store::lock;

const WORKER_STACK: usize = 512 * 1024;

/// Threads taking requests from tiny_http's queue.
const INTAKE_THREADS: usize = 4;

/// Most requests an intake thread takes at once: with [`INTAKE_THREADS`],
/// 64 reports can be on their way to the disk together.
const BATCH: usize = 16;

pub(super) struct HttpServer {
    server: Arc<tiny_http::Server>,
    intake: Vec<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
    /// Hands work to the workers; dropped to stop them.
    slow: Option<mpsc::Sender<Slow>>,
    reads: Option<(Arc<Reads>, JoinHandle<()>)>,
    addr: SocketAddr,
}

/// Work for the workers: anything that may wait on a client.
enum Slow {
    Serve(tiny_http::Request),
    /// The rest of an answer the client did not take at once.
    Finish(tiny_http::Unsent, String),
}

type ReadJob = Box<dyn FnOnce() + Send>;

/// The thread that answers GET (and HEAD) requests for the page, its API
/// and `/metrics`, one at a time: a long history read delays the page's
/// other reads, as it did on the one read connection before.
///
/// Their answers are large and short-lived (the status of 10,000 services is
/// 2.2 MB of JSON), and glibc keeps what a thread freed in that thread's
/// arena. Answered by whichever worker took the request, every worker's
/// arena kept its own high-water mark: the RSS grew by ~8 MB (what the
/// status took to build then) for each worker that ever served it, past
/// 100 MB as the page polled. On one thread the same memory is reused from
/// one read to the next. Reads already took turns on the store's one read
/// connection.
struct Reads(mpsc::Sender<ReadJob>);

impl Reads {
    fn start() -> Result<(Arc<Reads>, JoinHandle<()>)> {
        let (tx, rx) = mpsc::channel::<ReadJob>();
        let handle = std::thread::Builder::new()
            .name("overc-reads".into())
            .stack_size(WORKER_STACK)
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    job();
                }
            })?;
        Ok((Arc::new(Reads(tx)), handle))
    }

    /// Answers `req` on the read thread and waits for it.
    fn handle(&self, app: &Arc<App>, req: OwnedRequest) -> Response {
        let (reply, answer) = mpsc::sync_channel(1);
        let app = app.clone();
        let job: ReadJob = Box::new(move || {
            let _ = reply.send(handle_caught(&app, &req.borrow()));
        });
        if self.0.send(job).is_err() {
            return Response::error(503, "The server is stopping");
        }
        answer
            .recv()
            .unwrap_or_else(|_| Response::error(503, "The server is stopping"))
    }
}

/// A [`Request`] that owns its parts, to hand it to another thread.
struct OwnedRequest {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    remote: String,
}

impl OwnedRequest {
    fn borrow(&self) -> Request<'_> {
        Request {
            method: &self.method,
            url: &self.url,
            headers: &self.headers,
            body: &self.body,
            remote: &self.remote,
        }
    }
}

/// Answers on this thread; a panic in the handler is a 500, not a lost thread.
fn handle_caught(app: &App, req: &Request<'_>) -> Response {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| app.handle(req))) {
        Ok(r) => r,
        Err(_) => {
            log::error!("handler panicked on {} {}", req.method, req.url);
            Response::error(500, "Internal server error")
        }
    }
}

/// Binds `addr` with read and write timeouts that accepted sockets inherit
/// (Linux copies `SO_RCVTIMEO`/`SO_SNDTIMEO` to them), because tiny_http
/// itself never sets any.
/// The timeout (`client-timeout`) keeps a slow or silent client from holding
/// a worker.
/// Listens on `addr`, with socket timeouts of `timeout`.
pub(super) fn bind(addr: &str, timeout: Duration) -> Result<TcpListener> {
    let listener = TcpListener::bind(addr).map_err(|source| Error::Listen {
        addr: addr.to_owned(),
        source,
    })?;
    let sock = TcpStream::from(OwnedFd::from(listener));
    sock.set_read_timeout(Some(timeout))?;
    sock.set_write_timeout(Some(timeout))?;
    Ok(TcpListener::from(OwnedFd::from(sock)))
}

impl HttpServer {
    /// Serves `app` on a listener from [`bind`].
    pub(super) fn start_here(app: Arc<App>, listener: TcpListener) -> Result<HttpServer> {
        let addr = listener.local_addr()?;
        // A client that dribbles its head holds a connection thread for
        // `client-timeout` at most, and past `max-connections` a connection
        // gets no thread at all (6,000 dribbling clients held 6,045 threads
        // and 167 MB).
        let limits = tiny_http::Limits {
            max_connections: app.config.max_connections,
            head_timeout: Some(app.config.client_timeout),
        };
        let server = tiny_http::Server::from_listener_limited(listener, None, limits)
            .map_err(|e| Error::Config(format!("cannot listen on {addr}: {e}")))?;
        let server = Arc::new(server);
        let (reads, reads_thread) = Reads::start()?;
        let (slow, slow_rx) = mpsc::channel::<Slow>();
        let slow_rx = Arc::new(Mutex::new(slow_rx));
        let mut workers = Vec::new();
        for i in 0..app.config.workers.max(1) {
            let app = app.clone();
            let reads = reads.clone();
            let jobs = slow_rx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("overc-http-{i}"))
                .stack_size(WORKER_STACK)
                .spawn(move || {
                    loop {
                        // One worker waits on the channel; the others on the lock.
                        let job = lock(&jobs).recv();
                        match job {
                            Ok(Slow::Serve(rq)) => serve(&app, &reads, rq),
                            Ok(Slow::Finish(rest, remote)) => finish(rest, &remote),
                            Err(_) => break,
                        }
                    }
                })?;
            workers.push(handle);
        }
        let mut intake = Vec::new();
        for i in 0..INTAKE_THREADS {
            let server = server.clone();
            let app = app.clone();
            let slow = slow.clone();
            let handle = std::thread::Builder::new()
                .name(format!("overc-intake-{i}"))
                .stack_size(WORKER_STACK)
                .spawn(move || take_requests(&app, &server, &slow))?;
            intake.push(handle);
        }
        Ok(HttpServer {
            server,
            intake,
            workers,
            slow: Some(slow),
            reads: Some((reads, reads_thread)),
            addr,
        })
    }

    pub(super) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Each intake thread finishes its batch, then takes its unblock; the
    /// workers finish what was handed to them; the read thread stops once no
    /// worker can hand it anything.
    pub(super) fn stop(mut self) {
        for _ in &self.intake {
            self.server.unblock();
        }
        for t in self.intake.drain(..) {
            let _ = t.join();
        }
        self.slow = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        if let Some((reads, thread)) = self.reads.take() {
            drop(reads);
            let _ = thread.join();
        }
    }
}

/// An intake thread: takes requests in batches, answers the status reports
/// whose body is in memory, hands the rest to the workers.
fn take_requests(app: &Arc<App>, server: &tiny_http::Server, slow: &mpsc::Sender<Slow>) {
    let mut batch = Vec::with_capacity(BATCH);
    while let Ok(first) = server.recv() {
        batch.push(first);
        while batch.len() < BATCH {
            match server.try_recv() {
                Ok(Some(rq)) => batch.push(rq),
                _ => break,
            }
        }
        // The requests answered here, their bodies and their clients' addresses.
        let mut taken = Vec::with_capacity(batch.len());
        let mut bodies = Vec::with_capacity(batch.len());
        let mut remotes = Vec::with_capacity(batch.len());
        for mut rq in batch.drain(..) {
            if !is_status_in_memory(&rq, app.config.max_body) {
                hand_over(slow, Slow::Serve(rq));
                continue;
            }
            let mut body = Vec::with_capacity(rq.body_length().unwrap_or(0));
            // In memory already: this read cannot wait for the client.
            match rq.as_reader().read_to_end(&mut body) {
                Ok(_) => {
                    remotes.push(remote_of(&rq, &app.config.trusted_proxies));
                    bodies.push(body);
                    taken.push(Some(rq));
                }
                Err(_) => hand_over(slow, Slow::Serve(rq)),
            }
        }
        if taken.is_empty() {
            continue;
        }
        let requests: Vec<Request<'_>> = bodies
            .iter()
            .zip(&remotes)
            .map(|(body, remote)| Request {
                method: "POST",
                url: STATUS_PATH,
                headers: &[],
                body,
                remote,
            })
            .collect();
        let answer = |i: usize, response: Response| {
            let rq = taken.get_mut(i).and_then(Option::take);
            if let (Some(rq), Some(remote)) = (rq, remotes.get(i)) {
                respond_now(slow, rq, response, remote);
            }
        };
        let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            app.handle_statuses(&requests, answer)
        }));
        if handled.is_err() {
            log::error!(
                "handler panicked on a batch of {} status reports",
                requests.len()
            );
        }
        // Whatever went unanswered (only after a panic) answers 500.
        for (rq, remote) in taken.iter_mut().zip(&remotes) {
            if let Some(rq) = rq.take() {
                let response = Response::error(500, "Internal server error");
                respond_now(slow, rq, response, remote);
            }
        }
    }
}

/// The path of the status reports the intake threads answer (as logged).
const STATUS_PATH: &str = "/api/set/service/status";

/// Answers as far as that cannot block; the workers write the rest.
fn respond_now(
    slow: &mpsc::Sender<Slow>,
    rq: tiny_http::Request,
    response: Response,
    remote: &str,
) {
    match rq.respond_now(tiny_response(response)) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => log::debug!("writing a response to {remote} failed: {e}"),
        Err(rest) => hand_over(slow, Slow::Finish(rest, remote.to_owned())),
    }
}

/// Whether `rq` is a status report an intake thread answers: its body is in
/// memory (reading it cannot wait for the client) and within the limit.
fn is_status_in_memory(rq: &tiny_http::Request, max_body: usize) -> bool {
    let path = rq.url().split('?').next().unwrap_or("");
    *rq.method() == tiny_http::Method::Post
        && path.trim_end_matches('/') == STATUS_PATH
        && rq.body_ready()
        && rq.body_length().unwrap_or(0) <= max_body
}

/// Gives work to the workers. Only while the server stops can they be gone:
/// the request then answers 500 as it drops, the rest of an answer is
/// written here.
fn hand_over(slow: &mpsc::Sender<Slow>, job: Slow) {
    if let Err(mpsc::SendError(Slow::Finish(rest, remote))) = slow.send(job) {
        finish(rest, &remote);
    }
}

/// Writes the rest of an answer, waiting for the client as long as the
/// client timeout allows.
fn finish(rest: tiny_http::Unsent, remote: &str) {
    if let Err(e) = rest.finish() {
        log::debug!("writing a response to {remote} failed: {e}");
    }
}

/// Reads at most `max` bytes of a body, giving up at `deadline`: the socket
/// timeout only bounds each read, and a client dribbling a byte now and then
/// must not hold a worker for longer than the client timeout.
fn read_body(
    mut r: impl Read,
    body: &mut Vec<u8>,
    max: usize,
    deadline: Instant,
) -> std::io::Result<()> {
    while body.len() < max {
        if Instant::now() > deadline {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the body took too long",
            ));
        }
        let len = body.len();
        let spare = body.capacity() - len;
        let read = if spare == 0 {
            // Full (the announced length is in, or none was announced): a
            // small probe, so that finding the end does not grow the body.
            let mut probe = [0u8; 1024];
            let want = (max - len).min(probe.len());
            let read = r.read(&mut probe[..want]);
            if let Ok(n) = read {
                body.extend_from_slice(&probe[..n]);
            }
            read
        } else {
            // Straight into the capacity reserved for the announced length.
            let want = spare.min(max - len).min(16 * 1024);
            body.resize(len + want, 0);
            let read = r.read(&mut body[len..]);
            body.truncate(len + *read.as_ref().unwrap_or(&0));
            read
        };
        match read {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A client's address as text. IPv4 (every ingest request's) is written
/// digit by digit: `Display` goes through the formatting machinery and took
/// 1,350 instructions a request.
fn ip_text(ip: Option<IpAddr>) -> String {
    match ip {
        Some(IpAddr::V4(ip)) => {
            let mut s = String::with_capacity(15);
            for (i, octet) in ip.octets().into_iter().enumerate() {
                if i > 0 {
                    s.push('.');
                }
                if octet >= 100 {
                    s.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    s.push(char::from(b'0' + octet / 10 % 10));
                }
                s.push(char::from(b'0' + octet % 10));
            }
            s
        }
        Some(ip) => ip.to_string(),
        None => String::new(),
    }
}

/// The client's address of a request, as text: the peer's, or the one
/// `X-Forwarded-For` names when the peer is a trusted proxy.
fn remote_of(rq: &tiny_http::Request, trusted: &[Cidr]) -> String {
    let peer = rq.remote_addr().map(|a| a.ip());
    ip_text(match peer {
        Some(peer) if !trusted.is_empty() => {
            let forwarded = rq
                .headers()
                .iter()
                .filter(|h| h.field.equiv("X-Forwarded-For"))
                .map(|h| h.value.as_str());
            Some(client_ip(peer, forwarded, trusted))
        }
        other => other,
    })
}

/// Who a request came from. A peer outside `trusted` is the client, and
/// whatever `X-Forwarded-For` it sends is ignored (anyone can write one).
/// Behind trusted proxies the header's addresses are read from the right,
/// the order in which proxies appended them: the first one that is not a
/// trusted proxy is the client. When all are trusted, the left-most is;
/// an entry that is no address ends the walk at the last trusted hop, since
/// nothing left of it can be believed.
pub(super) fn client_ip<'a>(
    peer: IpAddr,
    forwarded_for: impl IntoIterator<Item = &'a str>,
    trusted: &[Cidr],
) -> IpAddr {
    if !Cidr::any_contains(trusted, peer) {
        return peer;
    }
    // Several header lines are one list, in order (RFC 9110, 5.3).
    let hops: Vec<&str> = forwarded_for
        .into_iter()
        .flat_map(|h| h.split(','))
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        match hop_ip(hop.trim()) {
            Some(ip) => {
                client = ip;
                if !Cidr::any_contains(trusted, ip) {
                    break;
                }
            }
            None => break,
        }
    }
    client
}

/// An `X-Forwarded-For` entry: `1.2.3.4`, `2001:db8::1`, or with a port,
/// `1.2.3.4:5678`, `[2001:db8::1]:443` (some proxies add one).
fn hop_ip(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| hop.strip_prefix('[')?.strip_suffix(']')?.parse().ok())
}

fn serve(app: &Arc<App>, reads: &Reads, mut rq: tiny_http::Request) {
    let limit = app.config.max_body;
    let remote = remote_of(&rq, &app.config.trusted_proxies);
    let response = if rq.body_length().is_some_and(|n| n > limit) {
        // Refused from the header alone; tiny_http discards the rest of the
        // body as it streams in, without keeping it.
        Response::error(413, &format!("Request body larger than {limit} bytes"))
    } else {
        let mut body = Vec::with_capacity(rq.body_length().unwrap_or(0).min(limit));
        let deadline = Instant::now() + app.config.client_timeout;
        match read_body(rq.as_reader(), &mut body, limit + 1, deadline) {
            Ok(_) if body.len() > limit => {
                Response::error(413, &format!("Request body larger than {limit} bytes"))
            }
            Ok(_) => {
                let api = rq.url().starts_with("/api/");
                // The ingest API reads no header: only the page's requests
                // (sign-in, cross-site checks) have theirs copied.
                let headers: Vec<(String, String)> = if api {
                    Vec::new()
                } else {
                    rq.headers()
                        .iter()
                        .map(|h| {
                            (
                                h.field.as_str().as_str().to_owned(),
                                h.value.as_str().to_owned(),
                            )
                        })
                        .collect()
                };
                let method = rq.method().as_str().to_owned();
                // Ingest and the page's actions (small answers; a test alert
                // waits for the plugins) stay on this worker.
                if api || !matches!(method.as_str(), "GET" | "HEAD") {
                    let req = Request {
                        method: &method,
                        url: rq.url(),
                        headers: &headers,
                        body: &body,
                        remote: &remote,
                    };
                    handle_caught(app, &req)
                } else {
                    let req = OwnedRequest {
                        method,
                        url: rq.url().to_owned(),
                        headers,
                        body,
                        remote: remote.clone(),
                    };
                    reads.handle(app, req)
                }
            }
            Err(e) => {
                log::debug!("reading a request body from {remote} failed: {e}");
                Response::error(400, "Could not read the request body")
            }
        }
    };
    if let Err(e) = rq.respond(tiny_response(response)) {
        log::debug!("writing a response to {remote} failed: {e}");
    }
}

fn tiny_response(response: Response) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let mut out = tiny_http::Response::from_data(response.body).with_status_code(response.status);
    for (k, v) in &response.headers {
        if let Ok(h) = tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()) {
            out.add_header(h);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out its data a few bytes per read, as a slow socket does.
    struct Dribble<'a>(&'a [u8]);

    impl Read for Dribble<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.0.len()).min(7);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn read_body_reads_everything_up_to_the_limit() {
        let data: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        let later = Instant::now() + Duration::from_secs(60);
        for capacity in [0, 10, 40_000] {
            let mut body = Vec::with_capacity(capacity);
            read_body(&data[..], &mut body, 1 << 20, later).unwrap();
            assert_eq!(body, data, "capacity {capacity}");
        }
        // Finding the end of an announced length does not grow the body.
        let mut body = Vec::with_capacity(data.len());
        read_body(&data[..], &mut body, 1 << 20, later).unwrap();
        assert_eq!(body.capacity(), data.len());
        let mut body = Vec::new();
        read_body(Dribble(&data), &mut body, 1 << 20, later).unwrap();
        assert_eq!(body, data);
        // One byte past the limit is read, so the caller can tell "too large".
        let mut body = Vec::with_capacity(100);
        read_body(&data[..], &mut body, 1001, later).unwrap();
        assert_eq!(body, data[..1001]);
    }

    #[test]
    fn ip_text_writes_addresses_as_display_does() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "255.255.255.255",
            "10.0.100.9",
            "1.20.3.200",
            "192.168.10.99",
            "::1",
            "fe80::1:2",
            "::ffff:1.2.3.4",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(Some(ip)), ip.to_string());
        }
        for n in 0..=255u8 {
            let ip = IpAddr::from([n, 255 - n, n / 3, n % 10]);
            assert_eq!(ip_text(Some(ip)), ip.to_string());
        }
        assert_eq!(ip_text(None), "");
    }

    #[test]
    fn the_client_is_the_right_most_untrusted_forwarded_address() {
        let nets = |s: &str| -> Vec<Cidr> { s.split(' ').map(|n| n.parse().unwrap()).collect() };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let trusted = nets("10.0.0.0/8 fd00::/8");
        let pick = |peer: &str, headers: &[&str]| {
            client_ip(ip(peer), headers.iter().copied(), &trusted).to_string()
        };
        // An untrusted peer is the client, whatever it claims.
        assert_eq!(pick("203.0.113.5", &["198.51.100.1"]), "203.0.113.5");
        // No proxies trusted: the header is never read.
        assert_eq!(
            client_ip(ip("10.0.0.1"), ["198.51.100.1"], &[]).to_string(),
            "10.0.0.1"
        );
        // A trusted proxy without the header is the client.
        assert_eq!(pick("10.0.0.1", &[]), "10.0.0.1");
        assert_eq!(pick("10.0.0.1", &["198.51.100.1"]), "198.51.100.1");
        // What the client wrote itself (left) is not believed: the proxies'
        // entries are read from the right up to the first untrusted one.
        assert_eq!(
            pick("10.0.0.1", &["6.6.6.6, 198.51.100.1, 10.0.0.2"]),
            "198.51.100.1"
        );
        // Several header lines are one list.
        assert_eq!(
            pick("10.0.0.1", &["6.6.6.6, 198.51.100.1", "10.0.0.2"]),
            "198.51.100.1"
        );
        // Every hop trusted: the left-most.
        assert_eq!(pick("10.0.0.1", &["10.1.1.1, 10.0.0.2"]), "10.1.1.1");
        // Garbage ends the walk at the last trusted hop.
        assert_eq!(pick("10.0.0.1", &["198.51.100.1, unknown"]), "10.0.0.1");
        assert_eq!(
            pick("10.0.0.1", &["198.51.100.1, nope, 10.0.0.9"]),
            "10.0.0.9"
        );
        // IPv6, ports, a dual-stack peer.
        assert_eq!(pick("fd00::1", &["2001:db8::7"]), "2001:db8::7");
        assert_eq!(pick("10.0.0.1", &["[2001:db8::7]:443"]), "2001:db8::7");
        assert_eq!(pick("10.0.0.1", &["198.51.100.1:5678"]), "198.51.100.1");
        assert_eq!(pick("::ffff:10.0.0.1", &[" 198.51.100.1 "]), "198.51.100.1");
    }

    #[test]
    fn read_body_gives_up_at_the_deadline() {
        let mut body = Vec::new();
        let past = Instant::now() - Duration::from_millis(1);
        let e = read_body(Dribble(b"abc"), &mut body, 100, past).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    }
}
