//! Deciding a request that matches global rules (`scope = "global"`, see [`super::global`]).
//!
//! The local rules are counted first, so a request they refuse never costs a round trip (a flood
//! that a per-client local rule stops does not reach Redis). Then each global rule's demand is
//! served from this replica's budget when its lease holds enough, and the rest go to Redis in one
//! script call, all-or-nothing. A refusal anywhere gives back everything counted before it. When
//! Redis cannot answer, each global rule takes its fallback (`redis_failure`).
//!
//! Global rules are asked only when every local rule admitted: the answer to a request a local
//! rule refuses names the local rules' longest wait, and global shadow rules do not see it.

use tokio::time::Instant;

use super::evaluate::{Demand, bind, nonzero, record_shadow};
use super::global::{Answer, Global, run_script, unavailable_retry_after};
use super::{Decision, Held, LimitKeyInput, Limits, Rule};
use crate::config::RedisFailure;
use crate::error::ProxyError;
use crate::mcp::Classified;
use crate::redis_conn::{RedisConn, RedisError};

impl Limits {
    /// [`Limits::check_rules`] for a sidecar with global rules: one Redis round trip at most.
    pub(super) async fn check_rules_global(
        &self,
        redis: &RedisConn,
        classified: &Classified,
        who: &LimitKeyInput<'_>,
        upstream_rules: &[Rule],
        held: &mut Held,
    ) -> Result<(), ProxyError> {
        let mut demands = self.demands(classified, who, upstream_rules);
        if !demands.iter().any(Demand::is_global) {
            self.decide_shadows(&mut demands, true);
            if demands.is_empty() {
                return Ok(());
            }
            let binding = self.take_local(&mut demands, classified, true)?;
            self.admitted(&demands, binding, held);
            return Ok(());
        }
        self.decide_shadows(&mut demands, false);
        let mut binding = self.take_local(&mut demands, classified, false)?;

        // Global demands: from the budget where a lease holds them, else asked of Redis.
        let now = Instant::now();
        let mut asked: Vec<(usize, &Global)> = Vec::new();
        for (i, d) in demands.iter_mut().enumerate() {
            let rule: &Rule = d.rule;
            let Some(global) = &rule.global else {
                continue;
            };
            if !d.rule.shadow
                && let Some(remaining) = global.spend(d.key, d.n, now)
            {
                d.from_budget = true;
                bind(&mut binding, i, remaining);
            } else {
                asked.push((i, global));
            }
        }
        if asked.is_empty() {
            self.admitted(&demands, binding, held);
            return Ok(());
        }
        let asks: Vec<_> = asked
            .iter()
            .map(|&(i, global)| {
                let d = &demands[i];
                let extra = if d.rule.shadow {
                    0
                } else {
                    global.extra_for(d.key, now)
                };
                let key = global.bucket_key(d.rule.key_parts(), who, d.msg);
                global.ask(key, d.n, extra, d.rule.shadow)
            })
            .collect();
        match run_script(redis, &self.gcra, &asks).await {
            Ok(answers) => {
                self.apply_answers(&mut demands, &asked, &answers, &mut binding, classified)?
            }
            Err(error) => self.fall_back(&mut demands, &asked, &error, &mut binding, classified)?,
        }
        self.admitted(&demands, binding, held);
        Ok(())
    }

    /// Takes Redis' answers: shadow rules are recorded; a refusal of an enforced rule refuses the
    /// request (the script stored nothing then); admissions take their leases.
    pub(super) fn apply_answers(
        &self,
        demands: &mut [Demand<'_>],
        asked: &[(usize, &Global)],
        answers: &[Answer],
        binding: &mut Option<(usize, u32)>,
        classified: &Classified,
    ) -> Result<(), ProxyError> {
        let mut first_refused = None;
        for (&(i, _), answer) in asked.iter().zip(answers) {
            let d = &mut demands[i];
            if d.rule.shadow {
                record_shadow(d, answer.decision);
            } else if !matches!(answer.decision, Decision::Admit { .. }) {
                d.refused = Some(answer.decision);
                first_refused.get_or_insert((i, answer.decision));
            }
        }
        if let Some((i, decision)) = first_refused {
            return Err(self.refuse(demands, i, decision, classified));
        }
        let now = Instant::now();
        for (&(i, global), answer) in asked.iter().zip(answers) {
            let d = &demands[i];
            if let (false, Decision::Admit { remaining }) = (d.rule.shadow, answer.decision) {
                global.lease(d.key, answer.reserved, remaining, now);
                let advertised = remaining
                    .saturating_add(answer.reserved)
                    .min(global.burst());
                bind(binding, i, advertised);
            }
        }
        Ok(())
    }

    /// Redis could not answer: each asked rule takes its fallback. `fail_closed` refuses the
    /// request (503); `fail_open` decides on the rule's local bucket, like a local rule.
    fn fall_back(
        &self,
        demands: &mut [Demand<'_>],
        asked: &[(usize, &Global)],
        error: &RedisError,
        binding: &mut Option<(usize, u32)>,
        classified: &Classified,
    ) -> Result<(), ProxyError> {
        for &(i, global) in asked {
            let d = &demands[i];
            global.fallback.inc_by(d.n.into());
            self.log_fallback(&d.rule.name, global.failure, error);
            if d.rule.shadow {
                record_shadow(d, d.rule.check(d.key, nonzero(d.n), true));
                continue;
            }
            match global.failure {
                RedisFailure::FailClosed => {
                    let rule = d.rule.name.clone();
                    for d in demands.iter_mut() {
                        d.give_back();
                    }
                    return Err(ProxyError::RateLimitUnavailable {
                        rule,
                        retry_after: unavailable_retry_after(error),
                    });
                }
                RedisFailure::FailOpen => match d.rule.take(d.key, nonzero(d.n)) {
                    Ok((remaining, receipt)) => {
                        demands[i].receipt = receipt;
                        bind(binding, i, remaining);
                    }
                    Err(decision) => return Err(self.refuse(demands, i, decision, classified)),
                },
            }
        }
        Ok(())
    }

    fn log_fallback(&self, rule: &str, failure: RedisFailure, error: &RedisError) {
        if let Some(suppressed) = self.fallback_log.admit(Instant::now()) {
            tracing::warn!(
                rule,
                mode = failure.as_str(),
                %error,
                suppressed,
                "global rate limit: redis did not answer, the rule's fallback decides"
            );
        }
    }
}
