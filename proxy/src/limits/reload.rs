//! The limits across a config reload ([`crate::reload`]). What survives it:
//! - the in-flight counters (global, streams, per principal, per upstream): requests and streams
//!   admitted before the reload stay counted, under the new caps once they apply
//!   ([`Limits::apply_caps`]);
//! - the buckets of every rule with the same scope (global, or the same upstream), name and
//!   settings: a client that spent its burst does not get a new one from a reload;
//! - the key hasher (keys are digests under it).
//!
//! A rule whose settings changed starts with empty buckets, as a new rule does.

use std::sync::Arc;

use super::{Limits, store::CappedStore};
use crate::config::{Config, RateLimitRule, same};
use crate::redis_conn::RedisConn;

/// The limits a reload replaces, with the config they were built from.
pub(super) struct Previous<'a> {
    pub(super) limits: &'a Limits,
    config: &'a Config,
}

impl Previous<'_> {
    /// The key table of the rule `rule` replaces: same scope (`None`: the global rules, else
    /// that upstream's), same name, same settings.
    pub(super) fn store(&self, scope: Option<&str>, rule: &RateLimitRule) -> Option<CappedStore> {
        let (rules, configs) = match scope {
            None => (&self.limits.rules, &self.config.rate_limit),
            Some(upstream) => (
                &self.limits.upstreams.get(upstream)?.rules,
                &self
                    .config
                    .upstream
                    .iter()
                    .find(|u| u.name == upstream)?
                    .rate_limit,
            ),
        };
        let before = configs.iter().find(|c| c.name == rule.name)?;
        if !same(before, rule) {
            return None;
        }
        rules
            .iter()
            .find(|r| *r.name == *rule.name)
            .map(|r| r.store().clone())
    }
}

impl Limits {
    /// The limits of a reloaded `config`, keeping from `previous` (built from `old`) what must
    /// survive (see the module docs). Builds only: the new caps apply with
    /// [`Limits::apply_caps`] once the whole reload has been built.
    pub fn rebuilt(
        config: &Config,
        previous: &Limits,
        old: &Config,
        redis: Option<Arc<RedisConn>>,
    ) -> Result<Self, crate::StartError> {
        let previous = Previous {
            limits: previous,
            config: old,
        };
        Self::build(
            config,
            previous.limits.metrics.clone(),
            Some(&previous),
            redis,
        )
    }

    /// Sets `config`'s caps on the counters these limits share with the ones they replaced.
    pub fn apply_caps(&self, config: &Config) {
        self.global.set_cap(config.limits.max_in_flight);
        self.streams.set_cap(config.limits.max_streams);
        if let Some(per_principal) = &self.principal_streams {
            per_principal.set_cap(config.limits.max_streams_per_principal);
        }
        for u in &config.upstream {
            if let Some(limits) = self.upstreams.get(u.name.as_str()) {
                limits.in_flight.set_cap(u.max_in_flight);
            }
        }
    }

    /// The global in-flight counter (tests).
    #[cfg(test)]
    pub(crate) fn global_in_flight(&self) -> &std::sync::Arc<super::InFlight> {
        &self.global
    }

    /// Whether the rule `name` (global: `scope` `None`) keeps its buckets in the very table it
    /// has in `other` (tests).
    #[cfg(test)]
    pub(crate) fn shares_buckets(&self, other: &Limits, scope: Option<&str>, name: &str) -> bool {
        let find = |l: &Limits| {
            let rules = match scope {
                None => Some(&l.rules),
                Some(u) => l.upstreams.get(u).map(|u| &u.rules),
            };
            rules.and_then(|r| {
                r.iter()
                    .find(|r| &*r.name == name)
                    .map(|r| r.store().clone())
            })
        };
        match (find(self), find(other)) {
            (Some(a), Some(b)) => a.same_table(&b),
            _ => false,
        }
    }
}
