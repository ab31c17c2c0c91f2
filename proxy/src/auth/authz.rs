//! Per-upstream authorization rules: which scopes may call which JSON-RPC methods and tools.
//!
//! Decisions, for a principal against an upstream with rules (without rules, everything is
//! allowed to any authenticated principal):
//! - notifications and responses, `initialize` and `ping`: allowed (protocol plumbing, not
//!   capabilities; refusing them only breaks session set-up and cancellation);
//! - `tools/call`: allowed when a rule for one of the principal's scopes lists a `tools` glob
//!   matching the tool's name;
//! - `tools/list`: allowed when the principal may call some tool or a rule's `methods` matches;
//!   the answer is filtered down to the tools it may call;
//! - any other method: allowed when a rule's `methods` glob matches it.
//!
//! A rule applies to a principal holding any of the rule's scopes (`*`: every principal).

use super::principal::Principal;
use crate::config::RuleConfig;
use crate::glob::Glob;
use crate::mcp::{Kind, Message};

#[derive(Debug)]
struct Rule {
    scopes: Vec<String>,
    any_principal: bool,
    methods: Vec<Glob>,
    tools: Vec<Glob>,
}

impl Rule {
    fn applies_to(&self, p: &Principal) -> bool {
        self.any_principal || self.scopes.iter().any(|s| p.has_scope(s))
    }
}

/// Why a message was refused, for the 403 and its `WWW-Authenticate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// `tool `x`` or `method `m``, for the error message.
    pub what: String,
    /// Metric outcome: `forbidden_tool` or `forbidden_method`.
    pub outcome: &'static str,
    /// Scopes that would have allowed it (space-separated; empty when none would).
    pub scopes: String,
}

/// The compiled rules of one upstream.
#[derive(Debug)]
pub struct Rules {
    rules: Vec<Rule>,
}

impl Rules {
    /// Compiles `config`; `None` when there are no rules (everything allowed).
    pub fn new(config: &[RuleConfig]) -> Option<Self> {
        if config.is_empty() {
            return None;
        }
        let rules = config
            .iter()
            .map(|r| Rule {
                any_principal: r.scopes.iter().any(|s| s == "*"),
                scopes: r.scopes.iter().filter(|s| *s != "*").cloned().collect(),
                methods: r.methods.iter().map(|m| Glob::new(m)).collect(),
                tools: r.tools.iter().map(|t| Glob::new(t)).collect(),
            })
            .collect();
        Some(Self { rules })
    }

    /// Every scope the rules name (for `scopes_supported`).
    pub fn scopes(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in &self.rules {
            for s in &r.scopes {
                if !out.contains(s) {
                    out.push(s.clone());
                }
            }
        }
        out
    }

    /// Whether `principal` may call tool `name`.
    pub fn tool_allowed(&self, principal: &Principal, name: &str) -> bool {
        self.rules
            .iter()
            .any(|r| r.applies_to(principal) && r.tools.iter().any(|g| g.matches(name)))
    }

    fn method_allowed(&self, principal: &Principal, method: &str) -> bool {
        self.rules
            .iter()
            .any(|r| r.applies_to(principal) && r.methods.iter().any(|g| g.matches(method)))
    }

    /// Whether the principal sees any tool at all (so `tools/list` makes sense for it).
    fn any_tool(&self, principal: &Principal) -> bool {
        self.rules
            .iter()
            .any(|r| r.applies_to(principal) && !r.tools.is_empty())
    }

    /// Scopes of the rules for which `allows` holds.
    fn scopes_where(&self, allows: impl Fn(&Rule) -> bool) -> String {
        let mut out: Vec<&str> = Vec::new();
        for r in self.rules.iter().filter(|r| allows(r)) {
            for s in &r.scopes {
                if !out.contains(&s.as_str()) {
                    out.push(s);
                }
            }
        }
        out.join(" ")
    }

    /// Decides one classified message.
    pub fn check(&self, principal: &Principal, msg: &Message) -> Result<(), Denied> {
        if msg.kind != Kind::Request {
            return Ok(());
        }
        let method = msg.method.as_deref().unwrap_or_default();
        match method {
            "initialize" | "ping" => Ok(()),
            "tools/call" => {
                let tool = msg.tool.as_deref().unwrap_or_default();
                if !tool.is_empty() && self.tool_allowed(principal, tool) {
                    return Ok(());
                }
                Err(Denied {
                    what: format!("tool `{tool}`"),
                    outcome: "forbidden_tool",
                    scopes: self.scopes_where(|r| {
                        !tool.is_empty() && r.tools.iter().any(|g| g.matches(tool))
                    }),
                })
            }
            "tools/list" if self.any_tool(principal) || self.method_allowed(principal, method) => {
                Ok(())
            }
            _ if method != "tools/list" && self.method_allowed(principal, method) => Ok(()),
            _ => Err(Denied {
                what: format!("method `{method}`"),
                outcome: "forbidden_method",
                scopes: self.scopes_where(|r| {
                    r.methods.iter().any(|g| g.matches(method))
                        || (method == "tools/list" && !r.tools.is_empty())
                }),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::principal::Source;
    use crate::mcp::classify;

    fn principal(scopes: &[&str]) -> Principal {
        Principal {
            subject: "alice".into(),
            source: Source::Jwt("i".into()),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            audiences: vec![],
            audience_accepted_everywhere: true,
            claim_headers: vec![],
        }
    }

    fn rule(scopes: &[&str], methods: &[&str], tools: &[&str]) -> RuleConfig {
        let v = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect();
        RuleConfig {
            scopes: v(scopes),
            methods: v(methods),
            tools: v(tools),
        }
    }

    fn msg(body: &str) -> Message {
        classify(body.as_bytes()).unwrap().messages.remove(0)
    }

    fn call(tool: &str) -> Message {
        msg(&format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}"}}}}"#
        ))
    }

    fn method(m: &str) -> Message {
        msg(&format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{m}"}}"#))
    }

    fn rules() -> Rules {
        Rules::new(&[
            rule(&["crawl"], &[], &["crawl_*"]),
            rule(&["tools:read"], &["resources/*"], &["echo", "add"]),
            rule(&["*"], &["prompts/list"], &[]),
        ])
        .unwrap()
    }

    #[test]
    fn tools_follow_scopes() {
        let r = rules();
        let crawler = principal(&["crawl"]);
        assert!(r.check(&crawler, &call("crawl_web")).is_ok());
        let denied = r.check(&crawler, &call("echo")).unwrap_err();
        assert_eq!(denied.outcome, "forbidden_tool");
        assert_eq!(denied.scopes, "tools:read");
        let nobody = principal(&["other"]);
        let denied = r.check(&nobody, &call("crawl_x")).unwrap_err();
        assert_eq!(denied.scopes, "crawl");
        assert_eq!(r.check(&nobody, &call("unknown")).unwrap_err().scopes, "");
    }

    #[test]
    fn methods_plumbing_and_star_rules() {
        let r = rules();
        let nobody = principal(&[]);
        assert!(r.check(&nobody, &method("initialize")).is_ok());
        assert!(r.check(&nobody, &method("ping")).is_ok());
        assert!(
            r.check(&nobody, &method("prompts/list")).is_ok(),
            "`*` rule"
        );
        assert!(r.check(&nobody, &method("tools/list")).is_err());
        assert!(
            r.check(&principal(&["crawl"]), &method("tools/list"))
                .is_ok()
        );
        assert!(r.check(&nobody, &method("resources/read")).is_err());
        assert!(
            r.check(&principal(&["tools:read"]), &method("resources/read"))
                .is_ok()
        );
        let n = msg(r#"{"jsonrpc":"2.0","method":"notifications/cancelled"}"#);
        assert!(r.check(&nobody, &n).is_ok());
        let resp = msg(r#"{"jsonrpc":"2.0","id":"s1","result":{}}"#);
        assert!(r.check(&nobody, &resp).is_ok());
    }

    #[test]
    fn tools_call_without_a_name_is_denied() {
        let r = Rules::new(&[rule(&["*"], &["*"], &["*"])]).unwrap();
        let m = msg(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#);
        assert!(r.check(&principal(&[]), &m).is_err());
        assert!(r.check(&principal(&[]), &call("anything")).is_ok());
    }

    #[test]
    fn methods_star_does_not_grant_tools() {
        let r = Rules::new(&[rule(&["admin"], &["*"], &[])]).unwrap();
        assert!(
            r.check(&principal(&["admin"]), &method("resources/list"))
                .is_ok()
        );
        assert!(r.check(&principal(&["admin"]), &call("echo")).is_err());
    }
}
