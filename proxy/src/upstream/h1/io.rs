//! The byte stream to a backend: plain TCP, or TLS over TCP, as the connector made it.
//!
//! Why not the connector's own stream type: hyper-rustls hands out
//! `MaybeHttpsStream<TokioIo<TcpStream>>`, which speaks hyper's I/O traits, so the client leg
//! (written against tokio's) would wrap it in one more `TokioIo`. Every read and write of a
//! plain connection then crossed two adapters, each converting its read buffer; reading the
//! `TcpStream` directly took a small but measurable number of instructions off each request
//! (BENCHMARKS.md, "Figures behind code decisions"). A plain connection is unwrapped to its
//! `TcpStream` here; a TLS one keeps the adapters (the TLS work dwarfs them).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_rustls::MaybeHttpsStream;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// What `hyper_rustls::HttpsConnector<HttpConnector>` connects.
pub type Connected = MaybeHttpsStream<TokioIo<TcpStream>>;

/// A connection's byte stream.
#[derive(Debug)]
pub enum Io {
    /// Plain TCP, read and written directly.
    Plain(TcpStream),
    /// TLS, through the connector's stream (boxed: it is much larger than a `TcpStream`).
    Tls(Box<TokioIo<Connected>>),
}

impl From<Connected> for Io {
    fn from(stream: Connected) -> Self {
        match stream {
            MaybeHttpsStream::Http(tcp) => Self::Plain(tcp.into_inner()),
            tls @ MaybeHttpsStream::Https(_) => Self::Tls(Box::new(TokioIo::new(tls))),
        }
    }
}

impl From<TcpStream> for Io {
    fn from(tcp: TcpStream) -> Self {
        Self::Plain(tcp)
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
