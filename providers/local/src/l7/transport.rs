//! The client connection's byte stream, as the HTTP serving loop needs it: counted, possibly
//! TLS, able to wait for the next request without reading it (so an idle connection can be
//! parked without HTTP buffers), and able to give back bytes already read ([`Rewind`]).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::stats::{Counters, add};

/// What the serving loop needs of a client stream.
pub(crate) trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Resolves when the client sent something (or closed); reads nothing.
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send + '_;

    /// Whether bytes were already received and decoded but not read (TLS buffers records).
    fn has_buffered(&mut self) -> bool;
}

/// A client socket that counts the bytes it moves (both directions, TLS included). It adds to
/// the load balancer's shared counters every `FLUSH` bytes and when it closes, not on every
/// read and write: those counters are shared by every connection on every thread.
pub(crate) struct Counted {
    inner: TcpStream,
    counters: Arc<Counters>,
    pending_in: u64,
    pending_out: u64,
}

const FLUSH: u64 = 64 * 1024;

impl Counted {
    pub(crate) fn new(inner: TcpStream, counters: Arc<Counters>) -> Self {
        Self { inner, counters, pending_in: 0, pending_out: 0 }
    }
}

fn count(pending: &mut u64, c: &AtomicU64, n: usize) {
    *pending += n as u64;
    if *pending >= FLUSH {
        add(c, std::mem::take(pending));
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        add(&self.counters.bytes_in, self.pending_in);
        add(&self.counters.bytes_out, self.pending_out);
    }
}

impl AsyncRead for Counted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            let me = &mut *self;
            count(&mut me.pending_in, &me.counters.bytes_in, buf.filled().len() - before);
        }
        r
    }
}

impl AsyncWrite for Counted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = r {
            let me = &mut *self;
            count(&mut me.pending_out, &me.counters.bytes_out, n);
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            let me = &mut *self;
            count(&mut me.pending_out, &me.counters.bytes_out, n);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Transport for Counted {
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send + '_ {
        self.inner.readable()
    }

    fn has_buffered(&mut self) -> bool {
        false
    }
}

impl Transport for TlsStream<Counted> {
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send + '_ {
        self.get_ref().0.inner.readable()
    }

    fn has_buffered(&mut self) -> bool {
        // Records received with the last request may hold the next one, decrypted already.
        self.get_mut().1.process_new_packets().map_or(true, |s| s.plaintext_bytes_to_read() > 0)
    }
}

/// A stream that first yields `prefix` (bytes read before, e.g. to tell HTTP/2 from HTTP/1.1,
/// or left in hyper's buffer when a connection was parked), then the stream itself.
pub(crate) struct Rewind<T> {
    prefix: Bytes,
    inner: T,
}

impl<T> Rewind<T> {
    pub(crate) fn new(inner: T, prefix: Bytes) -> Self {
        Self { prefix, inner }
    }

    /// The stream and the prefix bytes not read yet.
    pub(crate) fn into_parts(self) -> (T, Bytes) {
        (self.inner, self.prefix)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewind<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Rewind<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    #[tokio::test]
    async fn rewind_yields_the_prefix_first() {
        let data: &[u8] = b" world";
        let mut r = Rewind::new(data, Bytes::from_static(b"hello"));
        let mut out = String::new();
        r.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "hello world");
        let (_, rest) = Rewind::new(data, Bytes::from_static(b"abc")).into_parts();
        assert_eq!(&rest[..], b"abc");
    }
}
