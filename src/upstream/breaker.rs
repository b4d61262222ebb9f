//! A circuit breaker per ECS endpoint. After `threshold` consecutive failures
//! (transport errors, timeouts, 5xx, unreadable answers: ECS's own 4xx
//! answers prove the endpoint works) the circuit opens: calls fail at once
//! for `open_for`, instead of piling onto an endpoint that is down. Then one
//! probe call is let through (half-open); its success closes the circuit, its
//! failure opens it again.
//!
//! Only failing endpoints are tracked, and not for ever: a region a caller
//! names (any syntactically valid one) gets an endpoint, so the map is
//! bounded ([`MAX_TRACKED`]); entries that have said nothing for `open_for`
//! (failures that stopped, an open circuit nobody probed) are forgotten
//! first, and when every place holds a live entry a new endpoint goes
//! untracked (its calls still fail on their own, they are just not cut
//! short).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
        /// The last failure.
        last: Instant,
    },
    /// Opened as `epoch`: only a probe admitted for that epoch decides.
    Open { until: Instant, epoch: u64 },
    /// The probe of `epoch` is under way, since `since`.
    HalfOpen { epoch: u64, since: Instant },
}

/// What [`Breakers::admit`] let through: an ordinary call, or the probe of
/// an open circuit. Its outcome is recorded with it, so that a call admitted
/// before the circuit opened can neither close it nor keep it open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "record the outcome of an admitted call"]
pub struct Admission {
    probe: Option<u64>,
}

/// Most endpoints tracked at once.
pub const MAX_TRACKED: usize = 1024;

#[derive(Debug)]
struct Inner {
    states: HashMap<String, State>,
    /// Incremented each time a circuit opens.
    epochs: u64,
}

/// The breakers of every endpoint.
#[derive(Debug)]
pub struct Breakers {
    threshold: u32,
    open_for: Duration,
    inner: Mutex<Inner>,
}

impl Breakers {
    /// Breakers opening after `threshold` consecutive failures, for `open_for`.
    pub fn new(threshold: u32, open_for: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            open_for,
            inner: Mutex::new(Inner {
                states: HashMap::new(),
                epochs: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a call to `endpoint` may go now.
    ///
    /// # Errors
    ///
    /// The circuit is open: how long until a probe is let through.
    pub fn admit(&self, endpoint: &str) -> Result<Admission, Duration> {
        let mut inner = self.lock();
        // Healthy endpoints have no entry: the map holds failing ones only.
        let Some(state) = inner.states.get_mut(endpoint) else {
            return Ok(Admission { probe: None });
        };
        match *state {
            State::Closed { .. } => Ok(Admission { probe: None }),
            State::Open { until, epoch } => {
                let now = Instant::now();
                if now < until {
                    Err(until - now)
                } else {
                    *state = State::HalfOpen { epoch, since: now };
                    Ok(Admission { probe: Some(epoch) })
                }
            }
            // A probe whose verdict never came (its task died between admit
            // and record) must not keep the circuit half-open for good: after
            // another pause, the next call probes instead.
            State::HalfOpen { epoch, since } if since.elapsed() >= self.open_for => {
                *state = State::HalfOpen {
                    epoch,
                    since: Instant::now(),
                };
                Ok(Admission { probe: Some(epoch) })
            }
            // One probe at a time; the others wait for its verdict.
            State::HalfOpen { .. } => Err(self.open_for.min(Duration::from_secs(1))),
        }
    }

    /// Records the outcome of an admitted call. While the circuit is open or
    /// half-open only its probe counts: calls admitted before it opened
    /// neither close it (their success says nothing of the endpoint now) nor
    /// extend it (their failures are the ones that opened it).
    pub fn record(&self, endpoint: &str, admission: Admission, success: bool) {
        let mut inner = self.lock();
        let current = inner.states.get(endpoint).copied();
        match (current, admission.probe) {
            (Some(State::Open { .. }), _) => return,
            (Some(State::HalfOpen { epoch, .. }), Some(probe)) if probe == epoch => {}
            (Some(State::HalfOpen { .. }), _) => return,
            _ => {}
        }
        if success {
            inner.states.remove(endpoint);
            return;
        }
        let failures = match current {
            Some(State::Closed { failures, .. }) => failures + 1,
            None => 1,
            // The probe failed.
            Some(_) => self.threshold,
        };
        let now = Instant::now();
        let next = if failures < self.threshold {
            State::Closed {
                failures,
                last: now,
            }
        } else {
            tracing::warn!(endpoint, open_for = ?self.open_for, "circuit opened");
            inner.epochs += 1;
            State::Open {
                until: now + self.open_for,
                epoch: inner.epochs,
            }
        };
        if current.is_none() && inner.states.len() >= MAX_TRACKED {
            let open_for = self.open_for;
            inner.states.retain(|_, state| match *state {
                State::Closed { last, .. } => now.duration_since(last) < open_for,
                State::Open { until, .. } => now < until + open_for,
                State::HalfOpen { since, .. } => now.duration_since(since) < 2 * open_for,
            });
            if inner.states.len() >= MAX_TRACKED {
                tracing::warn!(
                    endpoint,
                    "too many failing endpoints to track; this one has no circuit breaker"
                );
                return;
            }
        }
        inner.states.insert(endpoint.to_owned(), next);
    }

    /// Ends an admitted call that proved nothing either way (it ran out of
    /// the caller's time): a half-open circuit lets the next call probe.
    pub fn release(&self, endpoint: &str, admission: Admission) {
        let mut inner = self.lock();
        if let Some(state) = inner.states.get_mut(endpoint)
            && let State::HalfOpen { epoch, .. } = *state
            && admission.probe == Some(epoch)
        {
            *state = State::Open {
                until: Instant::now(),
                epoch,
            };
        }
    }

    /// Endpoints with failures on record.
    pub fn tracked(&self) -> usize {
        self.lock().states.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_and_probes_after_the_pause() {
        let b = Breakers::new(3, Duration::from_secs(10));
        let e = "https://ecs.cn-hangzhou.aliyuncs.com";
        for _ in 0..2 {
            let a = b.admit(e).unwrap();
            b.record(e, a, false);
        }
        let a = b.admit(e).expect("two failures keep it closed");
        b.record(e, a, true);
        for _ in 0..3 {
            let a = b.admit(e).unwrap();
            b.record(e, a, false);
        }
        assert_eq!(b.admit(e), Err(Duration::from_secs(10)), "open");
        assert!(b.admit("https://other").is_ok(), "per endpoint");
        tokio::time::advance(Duration::from_secs(10)).await;
        let probe = b.admit(e).expect("half-open: one probe");
        assert!(b.admit(e).is_err(), "only one probe");
        b.record(e, probe, false);
        assert!(b.admit(e).is_err(), "a failed probe opens it again");
        tokio::time::advance(Duration::from_secs(10)).await;
        let probe = b.admit(e).unwrap();
        b.record(e, probe, true);
        assert!(
            b.admit(e).is_ok() && b.admit(e).is_ok(),
            "a good probe closes it"
        );
        assert_eq!(b.tracked(), 0, "healthy endpoints leave no entry");
    }

    #[tokio::test(start_paused = true)]
    async fn an_inconclusive_probe_lets_the_next_call_probe() {
        let b = Breakers::new(1, Duration::from_secs(10));
        let e = "https://ecs.cn-beijing.aliyuncs.com";
        let a = b.admit(e).unwrap();
        b.record(e, a, false);
        tokio::time::advance(Duration::from_secs(10)).await;
        let probe = b.admit(e).unwrap();
        b.release(e, probe);
        assert!(b.admit(e).is_ok(), "not stuck half-open");
    }

    /// Calls admitted before the circuit opened finish while it is open:
    /// a success must not close it without a probe, and failures must not
    /// push the end of the pause further out.
    #[tokio::test(start_paused = true)]
    async fn calls_admitted_before_it_opened_decide_nothing() {
        let b = Breakers::new(2, Duration::from_secs(10));
        let e = "https://ecs.cn-shanghai.aliyuncs.com";
        let early: Vec<Admission> = (0..4).map(|_| b.admit(e).unwrap()).collect();
        b.record(e, early[0], false);
        b.record(e, early[1], false);
        assert_eq!(b.admit(e), Err(Duration::from_secs(10)), "open");
        tokio::time::advance(Duration::from_secs(4)).await;
        b.record(e, early[2], false);
        assert_eq!(
            b.admit(e),
            Err(Duration::from_secs(6)),
            "a late failure does not extend the pause"
        );
        b.record(e, early[3], true);
        assert!(b.admit(e).is_err(), "a late success does not close it");
        tokio::time::advance(Duration::from_secs(6)).await;
        let probe = b.admit(e).unwrap();
        // Another early call that succeeds while the probe is under way.
        b.record(e, early[3], true);
        assert!(b.admit(e).is_err(), "only the probe decides");
        b.record(e, probe, true);
        assert!(b.admit(e).is_ok(), "the probe closed it");
    }

    /// A probe that never reports (its task died) does not leave the
    /// circuit half-open for good.
    #[tokio::test(start_paused = true)]
    async fn a_lost_probe_is_replaced_after_a_pause() {
        let b = Breakers::new(1, Duration::from_secs(10));
        let e = "https://ecs.cn-zhangjiakou.aliyuncs.com";
        let a = b.admit(e).unwrap();
        b.record(e, a, false);
        tokio::time::advance(Duration::from_secs(10)).await;
        let _lost = b.admit(e).unwrap();
        assert!(b.admit(e).is_err(), "the probe is under way");
        tokio::time::advance(Duration::from_secs(10)).await;
        let probe = b.admit(e).expect("a new probe replaces the lost one");
        b.record(e, probe, true);
        assert!(b.admit(e).is_ok(), "closed by the new probe");
    }

    /// A probe that comes back after its circuit was decided again (its
    /// epoch is over) decides nothing either.
    #[tokio::test(start_paused = true)]
    async fn a_stale_probe_decides_nothing() {
        let b = Breakers::new(1, Duration::from_secs(10));
        let e = "https://ecs.cn-qingdao.aliyuncs.com";
        let a = b.admit(e).unwrap();
        b.record(e, a, false);
        tokio::time::advance(Duration::from_secs(10)).await;
        let first = b.admit(e).unwrap();
        b.release(e, first);
        let second = b.admit(e).unwrap();
        b.record(e, second, false);
        // Open again, epoch 2; the first probe's late success is stale.
        b.record(e, first, true);
        assert!(b.admit(e).is_err(), "still open");
    }

    /// Issue 20, item 8: the map gained an entry per failing endpoint (a
    /// caller can name any valid region) and only a success removed it.
    #[tokio::test(start_paused = true)]
    async fn failing_endpoints_are_bounded_and_forgotten() {
        let breakers = Breakers::new(3, Duration::from_secs(10));
        for i in 0..(2 * MAX_TRACKED) {
            let endpoint = format!("https://ecs.xx-{i}.aliyuncs.com");
            let admission = breakers.admit(&endpoint).unwrap();
            breakers.record(&endpoint, admission, false);
        }
        assert_eq!(breakers.tracked(), MAX_TRACKED);
        // Failures that stopped are forgotten once they are older than the
        // pause: a new failing endpoint is tracked again.
        tokio::time::advance(Duration::from_secs(11)).await;
        let admission = breakers
            .admit("https://ecs.cn-hangzhou.aliyuncs.com")
            .unwrap();
        breakers.record("https://ecs.cn-hangzhou.aliyuncs.com", admission, false);
        assert_eq!(breakers.tracked(), 1);
    }
}
