//! Deadlines on every Kubernetes API request.
//!
//! kube's client gives up on nothing by default except a slow connect: a request on a
//! connection that silently drops everything (a NAT or firewall losing its state, an apiserver
//! or load balancer that hangs) waits for ever, holding whatever waits on it, a lease renewal
//! included. Two layers here:
//!
//! - **Socket timeouts** ([`configure`]): connect [`CONNECT_TIMEOUT`], each write
//!   [`WRITE_TIMEOUT`], and a read timeout [`READ_TIMEOUT`] counted from the last write or read
//!   (`reset_reader_on_write`, so the time a pooled connection sat idle does not count). The
//!   read timeout must not cut a quiet watch: kube-rs's watcher asks the server to end each watch
//!   after 290 s (`timeoutSeconds`, its default) and gives up itself after 295 s of silence;
//!   the apiserver need not send anything in between (bookmarks are optional). So 300 s: a
//!   backstop for any connection, not a way to notice a hang quickly.
//! - **A deadline per request** ([`DeadlineLayer`], [`REQUEST_TIMEOUT`]): a request that is not
//!   a watch must have its whole answer (headers and body) within 30 s, retries by the client's
//!   retry layer included (see `app::client`). A watch must have its response headers within
//!   the same 30 s (an apiserver sends them at once); its body is a stream left to the
//!   watcher's own idle timeout. 30 s is generous for any single request the controller makes
//!   (lists are paged at 500 objects by the watcher) and short enough that a reconcile stuck on
//!   a dead connection is retried on a new one within a minute.
//!
//! Leadership does not rely on these: each lease renewal is time-boxed by the renew deadline
//! (`leader`), which is shorter.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response, Uri};
use http_body::{Body as HttpBody, Frame, SizeHint};
use kube::Config;
use tokio::time::{Instant, Sleep};
use tower::{BoxError, Layer, Service};

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Longer than a watch may stay silent (290 s server-side timeout + kube-rs's 5 s margin).
pub const READ_TIMEOUT: Duration = Duration::from_secs(300);
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Sets the socket timeouts on a client configuration.
pub fn configure(config: &mut Config) {
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    config.write_timeout = Some(WRITE_TIMEOUT);
    config.read_timeout = Some(READ_TIMEOUT);
    config.reset_reader_on_write = true;
}

/// The error a request past its deadline fails with.
#[derive(Debug, thiserror::Error)]
#[error("no complete answer from the Kubernetes API within {0:?}")]
pub struct TimedOut(pub Duration);

/// Whether a request is a watch (`?watch=true`), whose body is a long-lived stream.
fn is_watch(uri: &Uri) -> bool {
    uri.query().is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"))
}

/// Puts a deadline on every request (see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct DeadlineLayer(pub Duration);

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Deadline<S> {
        Deadline { inner, timeout: self.0 }
    }
}

#[derive(Clone, Debug)]
pub struct Deadline<S> {
    inner: S,
    timeout: Duration,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Deadline<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    ResBody: HttpBody + Unpin,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<DeadlineBody<ResBody>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let watch = is_watch(req.uri());
        let timeout = self.timeout;
        let deadline = Instant::now() + timeout;
        let response = self.inner.call(req);
        Box::pin(async move {
            match tokio::time::timeout_at(deadline, response).await {
                Ok(Ok(response)) => Ok(response.map(|body| DeadlineBody {
                    body,
                    deadline: (!watch).then(|| Box::pin(tokio::time::sleep_until(deadline))),
                    timeout,
                })),
                Ok(Err(e)) => Err(e.into()),
                Err(_) => Err(Box::new(TimedOut(timeout)) as BoxError),
            }
        })
    }
}

/// A response body that fails once the request's deadline passes (none for watches).
pub struct DeadlineBody<B> {
    body: B,
    deadline: Option<Pin<Box<Sleep>>>,
    timeout: Duration,
}

impl<B> HttpBody for DeadlineBody<B>
where
    B: HttpBody + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match this.deadline.as_mut().map(|d| d.as_mut().poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(Some(Err(Box::new(TimedOut(this.timeout))))),
            _ => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;

    /// A body that sends `chunks` frames, then nothing ever again.
    struct Stalls {
        chunks: usize,
    }

    impl HttpBody for Stalls {
        type Data = &'static [u8];
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<&'static [u8]>, Infallible>>> {
            if self.chunks == 0 {
                return Poll::Pending;
            }
            self.chunks -= 1;
            Poll::Ready(Some(Ok(Frame::data(b"{".as_slice()))))
        }
    }

    /// Answers with headers at once (a body that stalls after one chunk), or never.
    #[derive(Clone)]
    struct Api {
        answers: bool,
    }

    impl Service<Request<()>> for Api {
        type Response = Response<Stalls>;
        type Error = Infallible;
        type Future = Pin<Box<dyn Future<Output = Result<Response<Stalls>, Infallible>> + Send>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<()>) -> Self::Future {
            let answers = self.answers;
            Box::pin(async move {
                if !answers {
                    std::future::pending::<()>().await;
                }
                Ok(Response::new(Stalls { chunks: 1 }))
            })
        }
    }

    fn request(uri: &str) -> Request<()> {
        Request::get(uri).body(()).expect("request")
    }

    async fn next_frame<B: HttpBody + Unpin>(body: &mut B) -> Option<Result<Frame<B::Data>, B::Error>> {
        std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await
    }

    /// The deadline of these tests (real time: tokio's test-util is not enabled in this
    /// workspace). Timers never fire early; `SLACK` allows for a loaded machine waking us late.
    const T: Duration = Duration::from_millis(300);
    const SLACK: Duration = Duration::from_millis(150);

    #[tokio::test]
    async fn no_answer_fails_at_the_deadline() {
        let mut svc = DeadlineLayer(T).layer(Api { answers: false });
        let start = Instant::now();
        let Err(err) = svc.call(request("/api/v1/namespaces/default/services/a")).await else { panic!("answered") };
        assert!(start.elapsed() >= T && start.elapsed() < T + SLACK, "{:?}", start.elapsed());
        assert!(err.is::<TimedOut>(), "{err}");
    }

    #[tokio::test]
    async fn a_body_that_stalls_fails_at_the_deadline_counted_from_the_request() {
        let mut svc = DeadlineLayer(T).layer(Api { answers: true });
        let start = Instant::now();
        let mut body = svc.call(request("/api/v1/services?limit=500")).await.expect("headers").into_body();
        assert!(matches!(next_frame(&mut body).await, Some(Ok(_))));
        let err = next_frame(&mut body).await.expect("a frame").expect_err("times out");
        assert!(err.is::<TimedOut>(), "{err}");
        assert!(start.elapsed() >= T && start.elapsed() < T + SLACK, "{:?}", start.elapsed());
    }

    #[tokio::test]
    async fn a_quiet_watch_is_left_to_the_watcher() {
        let mut svc = DeadlineLayer(T).layer(Api { answers: true });
        let uri = "/api/v1/services?allowWatchBookmarks=true&resourceVersion=7&timeoutSeconds=290&watch=true";
        let mut body = svc.call(request(uri)).await.expect("headers").into_body();
        assert!(matches!(next_frame(&mut body).await, Some(Ok(_))));
        let quiet = tokio::time::timeout(3 * T, next_frame(&mut body)).await;
        assert!(
            quiet.is_err(),
            "still open, silent, well past the deadline: {:?}",
            quiet.map(|f| f.map(|f| f.is_ok()))
        );
    }

    #[tokio::test]
    async fn a_watch_without_headers_fails_at_the_deadline() {
        let mut svc = DeadlineLayer(T).layer(Api { answers: false });
        let Err(err) = svc.call(request("/api/v1/services?watch=true")).await else { panic!("answered") };
        assert!(err.is::<TimedOut>(), "{err}");
    }

    #[test]
    fn watches_are_told_apart() {
        assert!(is_watch(&"/api/v1/services?watch=true&timeoutSeconds=290".parse().expect("uri")));
        assert!(is_watch(&"/api/v1/services?resourceVersion=1&watch=1".parse().expect("uri")));
        assert!(!is_watch(&"/api/v1/services?limit=500".parse().expect("uri")));
        assert!(!is_watch(&"/api/v1/namespaces/watch/services".parse().expect("uri")));
        assert!(!is_watch(&"/api/v1/services?watch=false".parse().expect("uri")));
    }
}
