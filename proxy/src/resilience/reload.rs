//! The resilience layer across a config reload ([`crate::reload`]): a breaker whose upstream
//! (and tool glob) and settings are unchanged is the same object afterwards, so an open circuit
//! stays open and a closed one keeps its failure window; an upstream whose whole policy is
//! unchanged keeps its retry budget too. Anything changed starts fresh, as at start-up.

use std::sync::Arc;

use tokio::time::Instant;

use super::{Breaker, BreakerKey, Resilience, UpstreamPolicy};
use crate::config::same;
use crate::config::{BreakerConfig, Config, UpstreamConfig};
use crate::upstream::{ByName, Upstream};

impl Resilience {
    /// The layer for a reloaded config's `upstreams`, keeping from `previous` (built from
    /// `old`) every breaker and policy whose settings did not change. Builds only: the metrics'
    /// series of breakers that went are removed by [`Resilience::retire`] once it is in use.
    pub fn rebuilt(upstreams: &[Arc<Upstream>], previous: &Resilience, old: &Config) -> Self {
        let metrics = previous.metrics.clone();
        let now = Instant::now();
        let old_upstream = |name: &str| old.upstream.iter().find(|u| u.name == name);
        let keep = |key: BreakerKey<'_>| -> Option<Arc<Breaker>> {
            let before = old_upstream(key.upstream)?;
            let (settings, id) = match key.tool {
                None => (Some(before.breaker.clone()), key.upstream.to_owned()),
                Some(glob) => (
                    before
                        .tool
                        .iter()
                        .find(|t| t.name == glob)
                        .and_then(|t| t.breaker.as_ref())
                        .map(|o| o.apply(&before.breaker)),
                    format!("{}/{glob}", key.upstream),
                ),
            };
            let settings: BreakerConfig = settings.filter(|s| s.enabled)?;
            same(&settings, key.settings)
                .then(|| previous.breaker(&id).cloned())
                .flatten()
        };
        let mut policies = ByName::default();
        for upstream in upstreams {
            let kept = old_upstream(&upstream.name)
                .filter(|before| same_policy(before, &upstream.config))
                .and_then(|_| previous.upstreams.get(&upstream.name).cloned());
            let policy = kept.unwrap_or_else(|| {
                Arc::new(UpstreamPolicy::new(
                    &upstream.name,
                    &upstream.config,
                    &metrics,
                    now,
                    &keep,
                ))
            });
            metrics.init_upstream(&upstream.name);
            policies.insert(upstream.name.clone(), policy);
        }
        Self::from_policies(upstreams, policies, metrics)
    }

    /// Once `next` has replaced this layer: the state series of the breakers `next` no longer
    /// has are removed (an upstream taken out of the config must not leave an "open" circuit
    /// behind for the alerts).
    pub fn retire(&self, next: &Resilience) {
        for gone in self
            .breakers
            .iter()
            .filter(|b| next.breaker(&b.id).is_none())
        {
            let tool = gone.tool.as_deref().unwrap_or("");
            let _ = self
                .metrics
                .breaker_state
                .remove_label_values(&[&gone.upstream, tool]);
        }
    }

    /// Whether the breaker `id` in `self` is the very object it is in `other` (tests).
    #[cfg(test)]
    pub(crate) fn shares_breaker(&self, other: &Resilience, id: &str) -> bool {
        match (self.breaker(id), other.breaker(id)) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// Whether everything an upstream's policy is built from is unchanged (then the policy, its
/// retry budget included, is kept whole).
fn same_policy(before: &UpstreamConfig, after: &UpstreamConfig) -> bool {
    let parts = |c: &UpstreamConfig| {
        serde_json::json!({
            "breaker": c.breaker,
            "tool": c.tool,
            "retry": c.retry,
            "response_timeout": c.response_timeout,
            "stream_idle_timeout": c.stream_idle_timeout,
            "closes_breaker": c.health_check.closes_breaker,
        })
    };
    parts(before) == parts(after)
}
