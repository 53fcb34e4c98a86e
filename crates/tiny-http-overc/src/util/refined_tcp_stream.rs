use std::io::Result as IoResult;
use std::io::{Error as IoError, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::connection::Connection;
#[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
use crate::ssl::SslStream;

pub(crate) enum Stream {
    Http(Connection),
    #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
    Https(SslStream),
}

impl Clone for Stream {
    fn clone(&self) -> Self {
        match self {
            Stream::Http(tcp_stream) => Stream::Http(tcp_stream.try_clone().unwrap()),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => Stream::Https(ssl_stream.clone()),
        }
    }
}

impl From<Connection> for Stream {
    fn from(tcp_stream: Connection) -> Self {
        Stream::Http(tcp_stream)
    }
}

impl Stream {
    fn secure(&self) -> bool {
        match self {
            Stream::Http(_) => false,
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(_) => true,
        }
    }

    fn peer_addr(&mut self) -> IoResult<Option<SocketAddr>> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.peer_addr(),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.peer_addr(),
        }
    }

    fn shutdown(&mut self, how: Shutdown) -> IoResult<()> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.shutdown(how),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.shutdown(how),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.read(buf),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.write(buf),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.write(buf),
        }
    }

    fn flush(&mut self) -> IoResult<()> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.flush(),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.flush(),
        }
    }
}

pub struct RefinedTcpStream {
    stream: Stream,
    close_read: bool,
    close_write: bool,
    /// overc patch: the read half's deadline for a request's head.
    head: Option<Arc<HeadDeadline>>,
}

/// overc patch: a request's head (request line and headers) must arrive
/// within `limit` in total, counted from its first byte. Upstream had only
/// the socket's timeout per read, so a client sending a byte now and then
/// held its connection's thread for ever. The wait for a head's first byte
/// (a keep-alive connection's idle time) is the socket's own read timeout;
/// normally the whole head comes with that read, at no extra system call.
/// Each later read of a head gets the time left as its timeout, and the
/// socket's own comes back at the next read after the head.
pub(crate) struct HeadDeadline {
    limit: Duration,
    state: Mutex<HeadState>,
}

#[derive(Default)]
struct HeadState {
    /// Between `start` and `end`.
    reading: bool,
    /// Set at the head's first byte.
    deadline: Option<Instant>,
    /// The socket's own read timeout, while it is shortened.
    saved: Option<Option<Duration>>,
}

impl HeadDeadline {
    pub(crate) fn new(limit: Duration) -> HeadDeadline {
        HeadDeadline {
            limit,
            state: Mutex::new(HeadState::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, HeadState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A request's head is about to be read.
    pub(crate) fn start(&self) {
        let mut s = self.state();
        s.reading = true;
        s.deadline = None;
    }

    /// The head is read: the socket's own timeout applies again (from the
    /// next read on).
    pub(crate) fn end(&self) {
        let mut s = self.state();
        s.reading = false;
        s.deadline = None;
    }

    fn before_read(&self, stream: &Stream) -> IoResult<()> {
        let mut s = self.state();
        let Some(deadline) = s.deadline.filter(|_| s.reading) else {
            // Not in a head, or waiting for its first byte (a keep-alive
            // connection's idle time): the socket's own timeout.
            if let Some(saved) = s.saved.take() {
                set_stream_read_timeout(stream, saved)?;
            }
            return Ok(());
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(late());
        }
        if s.saved.is_none() {
            s.saved = Some(stream_read_timeout(stream)?);
        }
        let shorter = match s.saved {
            Some(Some(own)) if own < left => own,
            _ => left,
        };
        set_stream_read_timeout(stream, Some(shorter))
    }

    /// The head's time starts with its first byte; a read that timed out
    /// while a head was late is the head's timeout.
    fn after_read(&self, r: IoResult<usize>) -> IoResult<usize> {
        let mut s = self.state();
        if !s.reading {
            return r;
        }
        match r {
            Ok(n) if n > 0 && s.deadline.is_none() => {
                s.deadline = Some(Instant::now() + self.limit);
                Ok(n)
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock && s.deadline.is_some() => Err(late()),
            r => r,
        }
    }
}

fn late() -> IoError {
    IoError::new(ErrorKind::TimedOut, "request head not received in time")
}

fn stream_read_timeout(stream: &Stream) -> IoResult<Option<Duration>> {
    match stream {
        Stream::Http(c) => c.read_timeout(),
        #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
        Stream::Https(_) => Ok(None),
    }
}

fn set_stream_read_timeout(stream: &Stream, t: Option<Duration>) -> IoResult<()> {
    match stream {
        Stream::Http(c) => c.set_read_timeout(t),
        #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
        Stream::Https(_) => Ok(()),
    }
}

impl RefinedTcpStream {
    pub(crate) fn new<S>(stream: S) -> (RefinedTcpStream, RefinedTcpStream)
    where
        S: Into<Stream>,
    {
        let stream: Stream = stream.into();

        let (read, write) = (stream.clone(), stream);

        let read = RefinedTcpStream {
            stream: read,
            close_read: true,
            close_write: false,
            head: None,
        };

        let write = RefinedTcpStream {
            stream: write,
            close_read: false,
            close_write: true,
            head: None,
        };

        (read, write)
    }

    /// Returns true if this struct wraps around a secure connection.
    #[inline]
    pub(crate) fn secure(&self) -> bool {
        self.stream.secure()
    }

    pub(crate) fn peer_addr(&mut self) -> IoResult<Option<SocketAddr>> {
        self.stream.peer_addr()
    }

    /// overc patch: reads of this (read) half keep to `head`'s deadline.
    pub(crate) fn set_head_deadline(&mut self, head: Arc<HeadDeadline>) {
        self.head = Some(head);
    }
}

impl Drop for RefinedTcpStream {
    fn drop(&mut self) {
        if self.close_read {
            self.stream.shutdown(Shutdown::Read).ok();
        }

        if self.close_write {
            self.stream.shutdown(Shutdown::Write).ok();
        }
    }
}

impl Read for RefinedTcpStream {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        // overc patch: see `HeadDeadline`.
        let Some(head) = &self.head else {
            return self.stream.read(buf);
        };
        head.before_read(&self.stream)?;
        let r = self.stream.read(buf);
        head.after_read(r)
    }
}

impl RefinedTcpStream {
    /// overc patch: see `Connection::send_now`; never writes through TLS.
    pub(crate) fn send_now(&self, buf: &[u8]) -> IoResult<usize> {
        match &self.stream {
            Stream::Http(connection) => connection.send_now(buf),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(_) => Ok(0),
        }
    }
}

impl Write for RefinedTcpStream {
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        self.stream.write(buf)
    }

    fn flush(&mut self) -> IoResult<()> {
        self.stream.flush()
    }
}
