//! Deciding a request against the rate-limit rules: which rules apply, counting it against each
//! (and giving the counts back when one refuses), and the `RateLimit` fields of the answer.

use std::num::NonZeroU32;
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use http::HeaderValue;

use super::store::Receipt;
use super::{Decision, Held, LimitKeyInput, Limits, Rejection, Rule, ceil_secs};
use crate::error::{ProxyError, retry_after_secs};
use crate::mcp::{Classified, Message};

/// Distinct sets of matching rules whose `RateLimit-Policy` value is kept ready. Requests match
/// a handful of sets in practice; beyond this many the value is built per request.
const POLICY_CACHE_SIZE: usize = 64;

/// One rule's share of a request: `n` requests under `key`.
pub(super) struct Demand<'a> {
    pub(super) rule: &'a Rule,
    pub(super) key: u64,
    /// The first message counted (a global rule's Redis key is computed from it).
    pub(super) msg: &'a Message,
    pub(super) n: u32,
    /// What counting it took, to give back if a later rule refuses the request.
    pub(super) receipt: Option<Receipt>,
    /// Taken from this replica's budget of a global rule, to give back likewise.
    pub(super) from_budget: bool,
    /// A refusal already known (a global rule's answer from Redis).
    pub(super) refused: Option<Decision>,
}

impl Demand<'_> {
    /// Gives back whatever counting it took.
    pub(super) fn give_back(&mut self) {
        self.rule.give_back(self.receipt.take());
        if std::mem::take(&mut self.from_budget)
            && let Some(global) = &self.rule.global
        {
            global.unspend(self.key, self.n);
        }
    }

    pub(super) fn is_global(&self) -> bool {
        self.rule.global.is_some()
    }
}

/// `RateLimit-Policy` values by set of rules (a bit per rule index below 64).
#[derive(Debug, Default)]
pub(super) struct PolicyCache(RwLock<Vec<(u64, HeaderValue)>>);

impl Limits {
    /// Counts the request against every enforced rule that matches it, in config order. When one
    /// refuses, what the rules before it counted is given back, so a refused request consumes
    /// nothing; the answer then names the rule that would make the client wait longest.
    ///
    /// Only local rules are decided here (a global rule, which needs Redis, is counted on its
    /// local bucket: callers with global rules use [`Limits::check_rules_global`]).
    pub(super) fn check_rules(
        &self,
        classified: &Classified,
        who: &LimitKeyInput<'_>,
        upstream_rules: &[Rule],
        held: &mut Held,
    ) -> Result<(), ProxyError> {
        let mut demands = self.demands(classified, who, upstream_rules);
        self.decide_shadows(&mut demands, true);
        if demands.is_empty() {
            return Ok(());
        }
        let binding = self.take_local(&mut demands, classified, true)?;
        self.admitted(&demands, binding, held);
        Ok(())
    }

    /// Every rule's share of the request: one demand per rule and key, in config order.
    pub(super) fn demands<'a>(
        &'a self,
        classified: &'a Classified,
        who: &LimitKeyInput<'_>,
        upstream_rules: &'a [Rule],
    ) -> Vec<Demand<'a>> {
        let mut demands: Vec<Demand<'a>> =
            Vec::with_capacity(self.rules.len() + upstream_rules.len());
        for rule in self.rules.iter().chain(upstream_rules) {
            for msg in classified.messages.iter().filter(|m| rule.applies(m)) {
                let key = rule.key(&self.hasher, who, msg);
                match demands
                    .iter_mut()
                    .find(|d| std::ptr::eq(d.rule, rule) && d.key == key)
                {
                    Some(d) => d.n += 1,
                    None => demands.push(Demand {
                        rule,
                        key,
                        msg,
                        n: 1,
                        receipt: None,
                        from_budget: false,
                        refused: None,
                    }),
                }
            }
        }
        demands
    }

    /// Decides the shadow rules alone, as if each were the only rule (they never refuse), and
    /// removes them from `demands`; global shadow rules are left in (Redis decides them) unless
    /// `with_global`.
    pub(super) fn decide_shadows(&self, demands: &mut Vec<Demand<'_>>, with_global: bool) {
        for d in demands
            .iter()
            .filter(|d| d.rule.shadow && (with_global || !d.is_global()))
        {
            let decision = d.rule.check(d.key, nonzero(d.n), true);
            record_shadow(d, decision);
        }
        demands.retain(|d| !d.rule.shadow || (!with_global && d.is_global()));
    }

    /// Takes the enforced local rules' counts (and the global rules' too when `with_global`, on
    /// their local buckets), in config order; returns the binding demand (least remaining) and
    /// its remaining burst. On a refusal, gives everything back and answers for the longest wait.
    pub(super) fn take_local(
        &self,
        demands: &mut [Demand<'_>],
        classified: &Classified,
        with_global: bool,
    ) -> Result<Option<(usize, u32)>, ProxyError> {
        let mut binding: Option<(usize, u32)> = None;
        for i in 0..demands.len() {
            let d = &demands[i];
            if d.rule.shadow || (!with_global && d.is_global()) {
                continue;
            }
            match d.rule.take(d.key, nonzero(d.n)) {
                Ok((remaining, receipt)) => {
                    demands[i].receipt = receipt;
                    bind(&mut binding, i, remaining);
                }
                Err(decision) => return Err(self.refuse(demands, i, decision, classified)),
            }
        }
        Ok(binding)
    }

    /// Counts the admitted request in the metrics and keeps the `RateLimit` fields for its
    /// answer (the binding demand's state).
    pub(super) fn admitted(
        &self,
        demands: &[Demand<'_>],
        binding: Option<(usize, u32)>,
        held: &mut Held,
    ) {
        for d in demands.iter().filter(|d| !d.rule.shadow) {
            d.rule.metrics.admitted.inc_by(d.n.into());
        }
        if let Some((i, remaining)) = binding {
            let rule = demands[i].rule;
            let reset = ceil_secs(rule.reset_after(remaining));
            held.headers = Some((
                self.policies(demands),
                header_value(rule.state(remaining, reset)),
            ));
        }
    }

    /// Gives back what every demand counted, asks the local rules after `refused` (without
    /// counting) whether they would refuse too, and builds the answer for the longest wait
    /// (global rules are not asked again: their known refusals count).
    pub(super) fn refuse(
        &self,
        demands: &mut [Demand<'_>],
        refused: usize,
        decision: Decision,
        classified: &Classified,
    ) -> ProxyError {
        for d in demands.iter_mut().rev() {
            d.give_back();
        }
        let mut worst = (refused, decision);
        for (i, d) in demands.iter().enumerate() {
            let decision = if i == refused {
                decision
            } else if let Some(known) = d.refused {
                known
            } else if i > refused && !d.is_global() && !d.rule.shadow {
                d.rule.check(d.key, nonzero(d.n), false)
            } else {
                continue;
            };
            if matches!(decision, Decision::Admit { .. }) {
                continue;
            }
            d.rule.metrics.rejected.inc_by(d.n.into());
            if wait(d, decision) > wait(&demands[worst.0], worst.1) {
                worst = (i, decision);
            }
        }
        let (d, decision) = (&demands[worst.0], worst.1);
        let retry_after = wait(d, decision);
        let secs = retry_after_secs(retry_after);
        let rule = &d.rule.name;
        let detail = if decision == Decision::Never {
            format!(
                "rate limit `{rule}`: a batch of {} requests exceeds its burst of {}; send \
                 smaller batches",
                d.n,
                d.rule.burst()
            )
        } else if classified.batch {
            format!("rate limit `{rule}` exceeded by this batch; retry in {secs} s")
        } else {
            format!("rate limit `{rule}` exceeded; retry in {secs} s")
        };
        ProxyError::RateLimited(Box::new(Rejection {
            rule: rule.clone(),
            retry_after,
            policy: self.policies(demands),
            state: header_value(d.rule.state(0, secs)),
            detail,
        }))
    }

    /// The `RateLimit-Policy` value listing the enforced rules that matched, in config order.
    fn policies(&self, demands: &[Demand<'_>]) -> HeaderValue {
        let set = demands
            .iter()
            .filter(|d| !d.rule.shadow)
            .try_fold(0u64, |set, d| {
                (d.rule.index < 64).then(|| set | 1 << d.rule.index)
            });
        let Some(set) = set else {
            return build_policies(demands);
        };
        let cache = &self.policy_cache.0;
        if let Some((_, value)) = cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|(s, _)| *s == set)
        {
            return value.clone();
        }
        let value = build_policies(demands);
        let mut cache = cache.write().unwrap_or_else(PoisonError::into_inner);
        if cache.len() < POLICY_CACHE_SIZE && !cache.iter().any(|(s, _)| *s == set) {
            cache.push((set, value.clone()));
        }
        value
    }
}

fn build_policies(demands: &[Demand<'_>]) -> HeaderValue {
    let mut value = Vec::new();
    for (i, d) in demands.iter().enumerate() {
        if d.rule.shadow || demands[..i].iter().any(|p| std::ptr::eq(p.rule, d.rule)) {
            continue;
        }
        if !value.is_empty() {
            value.extend_from_slice(b", ");
        }
        value.extend_from_slice(d.rule.policy.as_bytes());
    }
    header_value(value)
}

/// How long `decision` says to wait (a batch too large is told the full refill time).
fn wait(d: &Demand<'_>, decision: Decision) -> Duration {
    match decision {
        Decision::Admit { .. } => Duration::ZERO,
        Decision::Reject { wait } => wait,
        Decision::Never => d.rule.refill_time(),
    }
}

/// Rule names are `[A-Za-z0-9_-]` and the rest is digits and punctuation: always a valid value.
pub(super) fn header_value(value: impl Into<bytes::Bytes>) -> HeaderValue {
    HeaderValue::from_maybe_shared(value.into())
        .unwrap_or_else(|_| HeaderValue::from_static("\"invalid\""))
}

/// Counts a shadow rule's decision (it never refuses).
pub(super) fn record_shadow(d: &Demand<'_>, decision: Decision) {
    match decision {
        Decision::Admit { .. } => d.rule.metrics.admitted.inc_by(d.n.into()),
        decision => {
            d.rule.metrics.rejected.inc_by(d.n.into());
            tracing::info!(
                rule = %d.rule.name,
                ?decision,
                "shadow rate limit would have rejected the request"
            );
        }
    }
}

/// Keeps the demand with the least remaining burst: its state is the `RateLimit` field.
pub(super) fn bind(binding: &mut Option<(usize, u32)>, i: usize, remaining: u32) {
    if binding.is_none_or(|(_, r)| remaining < r) {
        *binding = Some((i, remaining));
    }
}

pub(super) fn nonzero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}
