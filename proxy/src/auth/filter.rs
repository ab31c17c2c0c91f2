//! `tools/list` filtering: a principal only sees the tools its rules let it call. The answer is
//! rewritten as it passes by the bodies of [`crate::body::rewrite`] (JSON read whole, SSE event by
//! event, GET streams by shape); this module says which tools stay.

use std::sync::Arc;

use serde_json::Value;

use super::authz::Rules;
use super::principal::Principal;
use crate::body::rewrite::MessageRewrite;

/// Who is looking: decides which tools are visible.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// The upstream's rules.
    pub rules: Arc<Rules>,
    /// The principal.
    pub principal: Arc<Principal>,
}

impl Viewer {
    fn visible(&self, tool: &Value) -> bool {
        tool.get("name")
            .and_then(Value::as_str)
            .is_some_and(|name| self.rules.tool_allowed(&self.principal, name))
    }
}

impl MessageRewrite for Viewer {
    fn rewrite(&self, message: &mut Value) -> bool {
        let Some(tools) = message
            .get_mut("result")
            .and_then(|r| r.get_mut("tools"))
            .and_then(Value::as_array_mut)
        else {
            return false;
        };
        let before = tools.len();
        tools.retain(|t| self.visible(t));
        tools.len() != before
    }

    fn worth_parsing(&self, event: &[u8]) -> bool {
        event.windows(7).any(|w| w == b"\"tools\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::principal::Source;
    use crate::body::rewrite::{SseRewriteBody, Target, rewrite_json};
    use crate::body::{BoxError, ProxyBody};
    use crate::config::RuleConfig;
    use bytes::Bytes;
    use http_body::Frame;
    use http_body_util::{BodyExt, StreamBody};
    use serde_json::json;

    fn viewer() -> Viewer {
        Viewer {
            rules: Arc::new(
                Rules::new(&[RuleConfig {
                    scopes: vec!["s".into()],
                    methods: vec![],
                    tools: vec!["echo".into(), "crawl_*".into()],
                }])
                .unwrap(),
            ),
            principal: Arc::new(Principal {
                subject: "a".into(),
                source: Source::Jwt("i".into()),
                scopes: vec!["s".into()],
                audiences: vec![],
                audience_accepted_everywhere: true,
                claim_headers: vec![],
            }),
        }
    }

    fn list(id: Value) -> Value {
        json!({"jsonrpc":"2.0","id":id,"result":{"tools":[
            {"name":"echo"},{"name":"add"},{"name":"crawl_web"},{"nameless":true}
        ],"nextCursor":"c"}})
    }

    fn names(v: &Value) -> Vec<&str> {
        v["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect()
    }

    #[test]
    fn json_single_and_batch() {
        let t = Target::Ids(vec![json!(2)]);
        let out = rewrite_json(list(json!(2)).to_string().as_bytes(), &t, &viewer()).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(names(&v), vec!["echo", "crawl_web"]);
        assert_eq!(v["result"]["nextCursor"], "c");
        assert!(rewrite_json(list(json!(3)).to_string().as_bytes(), &t, &viewer()).is_none());
        let batch = json!([list(json!(1)), list(json!(2))]).to_string();
        let v: Value =
            serde_json::from_slice(&rewrite_json(batch.as_bytes(), &t, &viewer()).unwrap())
                .unwrap();
        assert_eq!(
            v[0]["result"]["tools"].as_array().unwrap().len(),
            4,
            "other ids untouched"
        );
        assert_eq!(names(&v[1]), vec!["echo", "crawl_web"]);
        let all_visible = json!({"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"echo"}]}});
        assert!(rewrite_json(all_visible.to_string().as_bytes(), &t, &viewer()).is_none());
    }

    async fn run_sse(chunks: Vec<&'static str>, target: Target) -> (Vec<Bytes>, String) {
        let frames = futures_util::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, BoxError>(Frame::data(Bytes::from_static(c.as_bytes())))),
        );
        let body: ProxyBody = StreamBody::new(frames).boxed_unsync();
        let mut b = SseRewriteBody::new(body, target, viewer());
        let mut out = Vec::new();
        while let Some(f) = b.frame().await {
            out.push(f.unwrap().into_data().unwrap());
        }
        let text = out
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect();
        (out, text)
    }

    #[tokio::test]
    async fn sse_rewrites_only_the_tools_list_event() {
        let progress =
            "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n";
        let result = "id: 7\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"tools\":[{\"name\":\"echo\"},\n";
        let result_end = "data: {\"name\":\"add\"}]}}\n\n";
        let after = ": keepalive\n\n";
        let (frames, text) = run_sse(
            vec![progress, result, result_end, after],
            Target::Ids(vec![json!(2)]),
        )
        .await;
        assert_eq!(frames[0], progress, "unrelated event passes as it came");
        assert!(text.contains("id: 7\nevent: message\ndata: {"), "{text}");
        assert!(!text.contains("\"add\""), "{text}");
        assert!(text.ends_with("]}}\n\n: keepalive\n\n"), "{text}");
        assert_eq!(
            frames.last().unwrap(),
            after,
            "passthrough after the answer"
        );
    }

    #[tokio::test]
    async fn sse_get_streams_filter_by_shape_and_pass_other_events() {
        let legacy = "event: endpoint\ndata: /messages?sessionId=1\n\n";
        let answer = "event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{\"tools\":[{\"name\":\"add\"},{\"name\":\"crawl_x\"}]}}\r\n\r\n";
        let (frames, text) = run_sse(vec![legacy, answer], Target::Shape).await;
        assert_eq!(frames[0], legacy);
        assert!(
            text.contains("crawl_x") && !text.contains("\"add\""),
            "{text}"
        );
    }
}
