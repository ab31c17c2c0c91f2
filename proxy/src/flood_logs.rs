//! Which error answers are logged at most once per interval: the ones that come in floods (every
//! request fast-failed by an open circuit, shed at a cap, or refused for want of descriptors),
//! each with its own [`RateLimitedLog`]. Every other failure is logged each time.

use std::time::Duration;

use crate::error::ProxyError;
use crate::local_resources::LocalResource;
use crate::rate_limited_log::{FLOOD_LOG_INTERVAL, RateLimitedLog};

/// The limiters of the error answers that come in floods, one per reason (and per kind of local
/// resource): a request fast-failed by an open circuit, shed at a cap, or refused for want of
/// descriptors. The circuit's state changes are logged by the breaker itself, once each.
#[derive(Debug)]
pub struct FloodLogs {
    circuit_open: RateLimitedLog,
    overloaded: RateLimitedLog,
    local_resources: [RateLimitedLog; LocalResource::ALL.len()],
}

impl FloodLogs {
    /// Limiters allowing one line per `interval` each.
    pub fn new(interval: Duration) -> Self {
        Self {
            circuit_open: RateLimitedLog::new(interval),
            overloaded: RateLimitedLog::new(interval),
            local_resources: LocalResource::ALL.map(|_| RateLimitedLog::new(interval)),
        }
    }

    /// The limiter of `err`'s lines, or `None` when each of them is logged.
    pub fn limiter(&self, err: &ProxyError) -> Option<&RateLimitedLog> {
        match err {
            ProxyError::CircuitOpen { .. } => Some(&self.circuit_open),
            ProxyError::Overloaded { .. } => Some(&self.overloaded),
            ProxyError::LocalResourceExhausted { kind, .. } => {
                self.local_resources.get(kind.index())
            }
            _ => None,
        }
    }
}

impl Default for FloodLogs {
    fn default() -> Self {
        Self::new(FLOOD_LOG_INTERVAL)
    }
}
