//! Deciding a request against the rate-limit rules: which rules apply, the dry run across them,
//! the commit, and the `RateLimit` fields of the answer.

use std::num::NonZeroU32;
use std::time::Duration;

use http::HeaderValue;

use super::{Decision, Held, LimitKeyInput, Limits, Rejection, Rule, ceil_secs};
use crate::error::{ProxyError, retry_after_secs};
use crate::mcp::Classified;

/// One rule's share of a request: `n` requests under `key`.
struct Demand<'a> {
    rule: &'a Rule,
    key: u64,
    n: u32,
}

impl Limits {
    pub(super) fn check_rules(
        &self,
        classified: &Classified,
        who: &LimitKeyInput<'_>,
        upstream_rules: &[Rule],
        held: &mut Held,
    ) -> Result<(), ProxyError> {
        let mut demands: Vec<Demand<'_>> = Vec::new();
        for rule in self.rules.iter().chain(upstream_rules) {
            for msg in classified.messages.iter().filter(|m| rule.applies(m)) {
                let key = rule.key(&self.hasher, who, msg);
                match demands
                    .iter_mut()
                    .find(|d| std::ptr::eq(d.rule, rule) && d.key == key)
                {
                    Some(d) => d.n += 1,
                    None => demands.push(Demand { rule, key, n: 1 }),
                }
            }
        }
        if demands.is_empty() {
            return Ok(());
        }
        for d in demands.iter().filter(|d| d.rule.shadow) {
            match d.rule.check(d.key, nonzero(d.n), true) {
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
        let enforced: Vec<&Demand<'_>> = demands.iter().filter(|d| !d.rule.shadow).collect();
        if enforced.is_empty() {
            return Ok(());
        }
        if enforced.len() > 1 {
            // Dry run: admit only if every rule admits, so a refusal consumes nothing.
            let mut refused: Option<(&Demand<'_>, Decision)> = None;
            for d in &enforced {
                let decision = d.rule.check(d.key, nonzero(d.n), false);
                if !matches!(decision, Decision::Admit { .. }) {
                    d.rule.metrics.rejected.inc_by(d.n.into());
                    if refused.is_none_or(|(r, prev)| wait(d, decision) > wait(r, prev)) {
                        refused = Some((d, decision));
                    }
                }
            }
            if let Some((d, decision)) = refused {
                return Err(self.rejection(&enforced, d, decision, classified.batch));
            }
        }
        let mut binding: Option<(&Demand<'_>, u32)> = None;
        for d in &enforced {
            match d.rule.check(d.key, nonzero(d.n), true) {
                Decision::Admit { remaining } => {
                    if binding.is_none_or(|(_, r)| remaining < r) {
                        binding = Some((d, remaining));
                    }
                }
                decision => {
                    d.rule.metrics.rejected.inc_by(d.n.into());
                    return Err(self.rejection(&enforced, d, decision, classified.batch));
                }
            }
        }
        for d in &enforced {
            d.rule.metrics.admitted.inc_by(d.n.into());
        }
        if let Some((d, remaining)) = binding {
            let reset = ceil_secs(d.rule.reset_after(remaining));
            let state = format!("\"{}\";r={remaining};t={reset}", d.rule.name);
            held.headers = Some((policies(&enforced), header_value(state)));
        }
        Ok(())
    }

    fn rejection(
        &self,
        enforced: &[&Demand<'_>],
        d: &Demand<'_>,
        decision: Decision,
        batch: bool,
    ) -> ProxyError {
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
        } else if batch {
            format!("rate limit `{rule}` exceeded by this batch; retry in {secs} s")
        } else {
            format!("rate limit `{rule}` exceeded; retry in {secs} s")
        };
        ProxyError::RateLimited(Box::new(Rejection {
            rule: rule.clone(),
            retry_after,
            policy: policies(enforced),
            state: header_value(format!("\"{rule}\";r=0;t={secs}")),
            detail,
        }))
    }
}

/// How long `decision` says to wait (a batch too large is told the full refill time).
fn wait(d: &Demand<'_>, decision: Decision) -> Duration {
    match decision {
        Decision::Admit { .. } => Duration::ZERO,
        Decision::Reject { wait } => wait,
        Decision::Never => d.rule.refill_time(),
    }
}

/// The `RateLimit-Policy` value listing the enforced rules that applied.
fn policies(enforced: &[&Demand<'_>]) -> HeaderValue {
    let mut value = String::new();
    for (i, d) in enforced.iter().enumerate() {
        if enforced[..i].iter().any(|p| std::ptr::eq(p.rule, d.rule)) {
            continue;
        }
        if !value.is_empty() {
            value.push_str(", ");
        }
        value.push_str(&d.rule.policy);
    }
    header_value(value)
}

/// Rule names are `[A-Za-z0-9_-]` and the rest is digits and punctuation: always a valid value.
pub(super) fn header_value(value: String) -> HeaderValue {
    HeaderValue::from_maybe_shared(bytes::Bytes::from(value))
        .unwrap_or_else(|_| HeaderValue::from_static("\"invalid\""))
}

fn nonzero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}
