//! Health and reflection: the calls anyone who reaches the port may make,
//! with no identity and no admission place, bounded here instead.
//!
//! tonic buffers a whole message before it decodes it, and a stream lives
//! as long as its peer keeps it open, so without bounds one connection's
//! streams could each hold a message of the decoder's limit for as long as
//! they like (issue 20: 64 reflection streams each announcing 4 MiB took a
//! replica from 25 to 282 MiB for 40 s). So:
//!
//! - the server decodes their messages with a limit of a few KiB
//!   (`server.rs`), which refuses a larger announced length before buffering
//!   it;
//! - at most `max_streams_per_connection` are open on one connection, and
//!   `max_streams` in all (health `Check` aside: the kubelet's probe, a
//!   unary call, must never find the places taken); more are refused at
//!   once with RESOURCE_EXHAUSTED;
//! - a stream whose caller sends nothing for `idle_timeout` while its
//!   request side is open is ended with DEADLINE_EXCEEDED, and so is every
//!   stream when `deadline` has passed since it opened: a health `Watch`
//!   ends then too, and its client opens a new one.
//!
//! The bounds are kept by a timer task of each stream, not by the bodies:
//! a peer that opens no flow-control window never has its response body
//! polled, so a timer inside the body would never fire. When the task's
//! timer ends, it gives the stream's places back, fails its request body
//! (so the service, e.g. reflection's task, lets the stream go and HTTP/2
//! resets it) and ends its response body with DEADLINE_EXCEEDED trailers
//! when that is next polled.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use http_body::Frame;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tonic::codegen::Bytes;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use super::{BoxFuture, Counted, Counts, Error, Refusals};

/// Largest health or reflection request message, bytes: a service name or
/// a symbol is a few dozen.
pub const MAX_MESSAGE_SIZE: usize = 4 * 1024;

/// Bounds of health and reflection streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Streams open at once, in all.
    pub max_streams: usize,
    /// Streams open at once on one connection.
    pub max_streams_per_connection: usize,
    /// Longest a stream's open request side may send nothing.
    pub idle_timeout: Duration,
    /// Longest any stream lives (the server's `request_timeout`).
    pub deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_streams: 64,
            max_streams_per_connection: 8,
            idle_timeout: Duration::from_secs(10),
            deadline: Duration::from_secs(30),
        }
    }
}

/// The streams open, shared by every connection.
#[derive(Debug)]
pub(crate) struct Streams {
    limits: Limits,
    all: Arc<Semaphore>,
    /// Keyed by the peer's address and port: one key per open connection.
    per_connection: Counts<Option<SocketAddr>>,
}

/// An open stream's place, on its connection and (health `Check` aside)
/// in all, given back when its response ends or its timer does.
#[derive(Debug)]
struct StreamPlace {
    _all: Option<OwnedSemaphorePermit>,
    _connection: Counted<Option<SocketAddr>>,
}

/// The health service's unary check: exempt from the bound in all.
const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";

impl Streams {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            all: Arc::new(Semaphore::new(limits.max_streams)),
            per_connection: Counts::new(),
            limits,
        }
    }

    fn open(&self, connection: Option<SocketAddr>, exempt: bool) -> Result<StreamPlace, Error> {
        let connection = self
            .per_connection
            .take(connection, self.limits.max_streams_per_connection)
            .ok_or(Error::StreamsExhausted {
                limit: self.limits.max_streams_per_connection,
                scope: "per connection",
            })?;
        let all = if exempt {
            None
        } else {
            Some(
                self.all
                    .clone()
                    .try_acquire_owned()
                    .map_err(|_| Error::StreamsExhausted {
                        limit: self.limits.max_streams,
                        scope: "in all",
                    })?,
            )
        };
        Ok(StreamPlace {
            _all: all,
            _connection: connection,
        })
    }

    /// Serves one health or reflection call through `inner`, within the
    /// bounds.
    pub(crate) fn serve<S>(
        self: Arc<Self>,
        request: http::Request<tonic::body::Body>,
        mut inner: S,
        refusals: Refusals,
    ) -> BoxFuture<Result<S::Response, S::Error>>
    where
        S: tower::Service<
                http::Request<tonic::body::Body>,
                Response = http::Response<tonic::body::Body>,
            > + Send
            + 'static,
        S::Future: Send + 'static,
        S::Error: Send + 'static,
    {
        let exempt = request.uri().path() == HEALTH_CHECK;
        let place = match self.open(connection(request.extensions()), exempt) {
            Ok(place) => place,
            Err(error) => return Box::pin(std::future::ready(Ok((refusals.reject)(error)))),
        };
        let activity = Arc::new(Activity::new());
        let mut watchdog = Watchdog::new(activity.clone(), &self.limits);
        // The stream's timer, apart from the bodies (see the module's doc);
        // aborted, with its places given back, when the response ends.
        let timer = {
            let activity = activity.clone();
            AbortOnDrop(tokio::spawn(async move {
                let _place = place;
                let error = std::future::poll_fn(|cx| watchdog.poll_expired(cx)).await;
                tracing::info!(%error, "health or reflection stream ended");
                activity.expire(error);
            }))
        };
        let request = request.map(|body| {
            tonic::body::Body::new(Watched {
                inner: body,
                activity: activity.clone(),
            })
        });
        Box::pin(async move {
            let call = inner.call(request);
            tokio::pin!(call);
            let response = tokio::select! {
                response = &mut call => response?,
                error = std::future::poll_fn(|cx| activity.poll_expired(Side::Call, cx)) => {
                    return Ok((refusals.reject)(error));
                }
            };
            Ok(response.map(|body| {
                tonic::body::Body::new(Bounded {
                    inner: body,
                    activity,
                    trailers: refusals.trailers,
                    done: false,
                    _timer: timer,
                })
            }))
        })
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The connection a request came on: its peer's address and port.
fn connection(extensions: &http::Extensions) -> Option<SocketAddr> {
    extensions
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|t| t.get_ref().remote_addr())
        .or_else(|| {
            extensions
                .get::<TcpConnectInfo>()
                .and_then(TcpConnectInfo::remote_addr)
        })
}

/// Who waits for a stream's end.
#[derive(Debug, Clone, Copy)]
enum Side {
    /// The service, before it answered.
    Call,
    /// The request body.
    Request,
    /// The response body.
    Response,
}

/// Why a stream was ended, if it was, and who waits to know.
type Expired = (Option<Error>, [Option<Waker>; 3]);

/// When the caller last sent something, whether its side has ended, and
/// why the stream was ended, if it was.
#[derive(Debug)]
struct Activity {
    opened: Instant,
    /// Microseconds after `opened`.
    last: AtomicU64,
    ended: AtomicBool,
    expired: Mutex<Expired>,
}

impl Activity {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            last: AtomicU64::new(0),
            ended: AtomicBool::new(false),
            expired: Mutex::new((None, [None, None, None])),
        }
    }

    /// Ends the stream for `error`, waking whoever waits on it.
    fn expire(&self, error: Error) {
        let mut expired = self.expired.lock().unwrap_or_else(|e| e.into_inner());
        expired.0 = Some(error);
        for waker in expired.1.iter_mut().filter_map(Option::take) {
            waker.wake();
        }
    }

    /// Ready with the reason once the stream was ended.
    fn poll_expired(&self, side: Side, cx: &mut Context<'_>) -> Poll<Error> {
        let mut expired = self.expired.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(error) = &expired.0 {
            return Poll::Ready(error.clone());
        }
        expired.1[side as usize] = Some(cx.waker().clone());
        Poll::Pending
    }

    fn touch(&self) {
        let micros = u64::try_from(self.opened.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.last.store(micros, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.opened + Duration::from_micros(self.last.load(Ordering::Relaxed))
    }
}

/// The request body, noting each frame and its end.
struct Watched {
    inner: tonic::body::Body,
    activity: Arc<Activity>,
}

impl http_body::Body for Watched {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        // An ended stream fails its request: the service lets it go.
        if let Poll::Ready(error) = self.activity.poll_expired(Side::Request, cx) {
            return Poll::Ready(Some(Err(tonic::Status::cancelled(error.to_string()))));
        }
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(_))) => self.activity.touch(),
            Poll::Ready(None) => self.activity.ended.store(true, Ordering::Relaxed),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Ends a stream at its deadline, or when its open request side has been
/// idle too long.
struct Watchdog {
    activity: Arc<Activity>,
    deadline: Instant,
    limits: Limits,
    sleep: Pin<Box<Sleep>>,
}

impl Watchdog {
    fn new(activity: Arc<Activity>, limits: &Limits) -> Self {
        let deadline = activity.opened + limits.deadline;
        let first = (activity.opened + limits.idle_timeout).min(deadline);
        Self {
            activity,
            deadline,
            limits: *limits,
            sleep: Box::pin(tokio::time::sleep_until(first)),
        }
    }

    /// Ready with the reason once the stream must end.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<Error> {
        loop {
            ready!(self.sleep.as_mut().poll(cx));
            let now = Instant::now();
            if now >= self.deadline {
                return Poll::Ready(Error::StreamDeadline {
                    limit: self.limits.deadline,
                });
            }
            let next = if self.activity.ended.load(Ordering::Relaxed) {
                self.deadline
            } else {
                let idle_at = self.activity.last() + self.limits.idle_timeout;
                if now >= idle_at {
                    return Poll::Ready(Error::StreamIdle {
                        idle: self.limits.idle_timeout,
                    });
                }
                idle_at.min(self.deadline)
            };
            self.sleep.as_mut().reset(next);
        }
    }
}

/// The response body, ended with DEADLINE_EXCEEDED trailers once the
/// stream's timer ended it; the timer (and the places) go with it.
struct Bounded {
    inner: tonic::body::Body,
    activity: Arc<Activity>,
    trailers: super::Trailers,
    done: bool,
    _timer: AbortOnDrop,
}

impl http_body::Body for Bounded {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        // The end first: the service, its request failed, ends its own
        // answer at the same time, and must not have the last word (OK).
        if let Poll::Ready(error) = this.activity.poll_expired(Side::Response, cx) {
            this.done = true;
            return Poll::Ready(Some(Ok(Frame::trailers((this.trailers)(error)))));
        }
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if frame
            .as_ref()
            .is_none_or(|f| f.as_ref().is_ok_and(Frame::is_trailers))
        {
            this.done = true;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_bounded_per_connection_and_in_all() {
        let streams = Streams::new(Limits {
            max_streams: 3,
            max_streams_per_connection: 2,
            ..Limits::default()
        });
        let a: Option<SocketAddr> = Some("127.0.0.1:1000".parse().unwrap());
        let b: Option<SocketAddr> = Some("127.0.0.1:1001".parse().unwrap());
        let a1 = streams.open(a, false).unwrap();
        let _a2 = streams.open(a, false).unwrap();
        assert!(matches!(
            streams.open(a, false),
            Err(Error::StreamsExhausted {
                limit: 2,
                scope: "per connection"
            })
        ));
        let _b1 = streams.open(b, false).unwrap();
        assert!(matches!(
            streams.open(b, false),
            Err(Error::StreamsExhausted {
                limit: 3,
                scope: "in all"
            })
        ));
        // The refusal in all gave the connection's count back.
        assert_eq!(streams.per_connection.get(&b), Some(1));
        // A health check is not counted in all.
        let c: Option<SocketAddr> = Some("127.0.0.1:1002".parse().unwrap());
        let _check = streams.open(c, true).unwrap();
        drop(a1);
        streams.open(b, false).unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_open_stream_ends_and_every_stream_meets_its_deadline() {
        let limits = Limits::default();
        let activity = Arc::new(Activity::new());
        let mut watchdog = Watchdog::new(activity.clone(), &limits);
        tokio::time::sleep(Duration::from_secs(6)).await;
        activity.touch();
        // Idle counts from the last frame: 6 s + 10 s.
        let error = std::future::poll_fn(|cx| watchdog.poll_expired(cx)).await;
        assert!(matches!(error, Error::StreamIdle { .. }), "{error:?}");
        assert_eq!(activity.opened.elapsed(), Duration::from_secs(16));

        let activity = Arc::new(Activity::new());
        activity.ended.store(true, Ordering::Relaxed);
        let mut watchdog = Watchdog::new(activity.clone(), &limits);
        let error = std::future::poll_fn(|cx| watchdog.poll_expired(cx)).await;
        assert!(matches!(error, Error::StreamDeadline { .. }), "{error:?}");
        assert_eq!(activity.opened.elapsed(), limits.deadline);
    }
}
