//! A circuit breaker per ECS endpoint. After `threshold` consecutive failures
//! (transport errors, timeouts, 5xx, unreadable answers: ECS's own 4xx
//! answers prove the endpoint works) the circuit opens: calls fail at once
//! for `open_for`, instead of piling onto an endpoint that is down. Then one
//! probe call is let through (half-open); its success closes the circuit, its
//! failure opens it again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

/// The breakers of every endpoint.
#[derive(Debug)]
pub struct Breakers {
    threshold: u32,
    open_for: Duration,
    states: Mutex<HashMap<String, State>>,
}

impl Breakers {
    /// Breakers opening after `threshold` consecutive failures, for `open_for`.
    pub fn new(threshold: u32, open_for: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            open_for,
            states: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a call to `endpoint` may go now.
    ///
    /// # Errors
    ///
    /// The circuit is open: how long until a probe is let through.
    pub fn admit(&self, endpoint: &str) -> Result<(), Duration> {
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        // Healthy endpoints have no entry: the map holds failing ones only.
        let Some(state) = states.get_mut(endpoint) else {
            return Ok(());
        };
        match *state {
            State::Closed { .. } => Ok(()),
            State::Open { until } => {
                let now = Instant::now();
                if now < until {
                    Err(until - now)
                } else {
                    *state = State::HalfOpen;
                    Ok(())
                }
            }
            // One probe at a time; the others wait for its verdict.
            State::HalfOpen => Err(self.open_for.min(Duration::from_secs(1))),
        }
    }

    /// Records the outcome of an admitted call.
    pub fn record(&self, endpoint: &str, success: bool) {
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        if success {
            states.remove(endpoint);
            return;
        }
        let state = states
            .entry(endpoint.to_owned())
            .or_insert(State::Closed { failures: 0 });
        *state = match (*state, success) {
            (_, true) => State::Closed { failures: 0 },
            (State::Closed { failures }, false) if failures + 1 < self.threshold => State::Closed {
                failures: failures + 1,
            },
            (_, false) => {
                tracing::warn!(endpoint, open_for = ?self.open_for, "circuit opened");
                State::Open {
                    until: Instant::now() + self.open_for,
                }
            }
        };
    }
}

impl Breakers {
    /// Ends an admitted call that proved nothing either way (it ran out of
    /// the caller's time): a half-open circuit lets the next call probe.
    pub fn release(&self, endpoint: &str) {
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(state) = states.get_mut(endpoint)
            && *state == State::HalfOpen
        {
            *state = State::Open {
                until: Instant::now(),
            };
        }
    }

    /// Endpoints with failures on record.
    pub fn tracked(&self) -> usize {
        self.states.lock().unwrap_or_else(|e| e.into_inner()).len()
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
            assert!(b.admit(e).is_ok());
            b.record(e, false);
        }
        assert!(b.admit(e).is_ok(), "two failures keep it closed");
        b.record(e, true);
        for _ in 0..3 {
            assert!(b.admit(e).is_ok());
            b.record(e, false);
        }
        assert_eq!(b.admit(e), Err(Duration::from_secs(10)), "open");
        assert!(b.admit("https://other").is_ok(), "per endpoint");
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(b.admit(e).is_ok(), "half-open: one probe");
        assert!(b.admit(e).is_err(), "only one probe");
        b.record(e, false);
        assert!(b.admit(e).is_err(), "a failed probe opens it again");
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(b.admit(e).is_ok());
        b.record(e, true);
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
        b.admit(e).unwrap();
        b.record(e, false);
        tokio::time::advance(Duration::from_secs(10)).await;
        b.admit(e).unwrap();
        b.release(e);
        assert!(b.admit(e).is_ok(), "not stuck half-open");
    }
}
