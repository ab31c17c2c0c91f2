//! The end-to-end attack table of issue 14: raw requests an attacker would send (smuggling,
//! framing, header, request-line, path and Host tricks), each with the answer the client must
//! get and the exact bytes the backend may receive.
//!
//! The table is shared: `tests/tests/attacks.rs` runs every row against the real sidecar in
//! front of a [`RawBackend`], and the `edge_compare` example replays the same rows through
//! HAProxy and nginx (`scripts/edge-compare.sh`) to compare.
//!
//! The topology of every row: one backend, two mounts on the sidecar. `/public` is a public
//! upstream (no credential needed: a framing mistake there reaches the backend, so the table
//! shows it), `/mcp` a protected one (API key [`API_KEY`]), both on the same backend, the
//! layout of finding 1.

pub mod client;
pub mod rows;

use std::fmt::Write as _;
use std::net::SocketAddr;

use mcp_fixtures::RawBackend;
use mcp_sidecar::config::{ApiKeyConfig, AuthConfig, Config, Secret};

pub use client::{Answer, Outcome, exchange};
pub use rows::rows;

/// The API key the protected mount (`/mcp`) accepts, as `Authorization: Bearer <key>`.
pub const API_KEY: &str = "attack-table-key-0123456789";

/// Placeholder in an expected backend request for the backend's authority (`127.0.0.1:PORT`).
pub const BACKEND: &str = "{backend}";

/// The sidecar's configuration for the table: `/public` (public) and `/mcp` (API key) on
/// `backend`, everything else at its defaults.
pub fn sidecar_config(backend: SocketAddr) -> Config {
    let mut public = crate::upstream(format!("http://{backend}/public"), Some("/public"));
    public.name = "public".into();
    public.auth.public = true;
    let mut protected = crate::upstream(format!("http://{backend}/mcp"), Some("/mcp"));
    protected.name = "protected".into();
    let mut config = crate::config(vec![public, protected]);
    config.auth = AuthConfig {
        public_url: Some("http://localhost".into()),
        api_keys: vec![ApiKeyConfig {
            id: "attacker-known".into(),
            key: Secret(API_KEY.into()),
            scopes: Vec::new(),
        }],
        ..AuthConfig::default()
    };
    config
}

/// An expected answer status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Exactly this status.
    Is(u16),
    /// Any of these (where issue 14 leaves the exact code open, e.g. 400 or 501 for a request
    /// that is both unknown-coding and doubly framed).
    OneOf(&'static [u16]),
}

impl Status {
    fn matches(self, status: u16) -> bool {
        match self {
            Self::Is(s) => s == status,
            Self::OneOf(set) => set.contains(&status),
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Is(s) => write!(f, "{s}"),
            Self::OneOf(set) => {
                let all: Vec<String> = set.iter().map(u16::to_string).collect();
                write!(f, "{}", all.join("|"))
            }
        }
    }
}

/// What the client must see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientSees {
    /// These HTTP/1 answers in order and nothing more (an empty list: no answer at all).
    Answers(Vec<Status>),
    /// An HTTP/2 connection (the server's SETTINGS frame).
    Http2,
}

/// Whether the connection must be closed once the answers are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// Closed: whatever follows the refused request cannot be framed.
    Must,
    /// Kept open: the request was framed and the connection is reusable.
    MustNot,
    /// Either is right.
    Either,
}

/// What the backend may receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendSees {
    /// Not one byte.
    Nothing,
    /// Exactly these bytes (all connections concatenated), [`BACKEND`] standing for its
    /// authority.
    Exactly(Vec<u8>),
}

/// One attack.
#[derive(Debug, Clone)]
pub struct Row {
    /// Unique, `snake_case`, says what is sent.
    pub name: &'static str,
    /// The finding of issue 14 the row checks (1-9), if it is one.
    pub finding: Option<u8>,
    /// The raw bytes, written in these segments with a pause between them.
    pub send: Vec<Vec<u8>>,
    /// The backend's answer to each request, when not the default JSON result.
    pub backend_answer: Option<&'static [u8]>,
    pub client: ClientSees,
    pub close: Close,
    pub backend: BackendSees,
    /// Text every answer head must contain (case-insensitive), e.g. `content-length: 12`.
    pub head_has: Vec<&'static str>,
    /// Text no answer head may contain (case-insensitive).
    pub head_lacks: Vec<&'static str>,
}

impl Row {
    /// A row sending `bytes` in one write, expecting one 200 kept open and nothing at the
    /// backend until the builder methods say otherwise.
    pub fn new(name: &'static str, bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            name,
            finding: None,
            send: vec![bytes.into()],
            backend_answer: None,
            client: ClientSees::Answers(vec![Status::Is(200)]),
            close: Close::Either,
            backend: BackendSees::Nothing,
            head_has: Vec::new(),
            head_lacks: Vec::new(),
        }
    }

    /// Sends in these segments instead.
    pub fn segments(mut self, segments: &[&[u8]]) -> Self {
        self.send = segments.iter().map(|s| s.to_vec()).collect();
        self
    }

    /// Sends the bytes as two segments, cut after `at` bytes.
    pub fn split_after(mut self, at: usize) -> Self {
        let all = self.send.concat();
        let (a, b) = all.split_at(at.min(all.len()));
        self.send = vec![a.to_vec(), b.to_vec()];
        self
    }

    pub fn finding(mut self, n: u8) -> Self {
        self.finding = Some(n);
        self
    }

    /// One answer with this status.
    pub fn status(mut self, status: u16) -> Self {
        self.client = ClientSees::Answers(vec![Status::Is(status)]);
        self
    }

    /// One answer with one of these statuses.
    pub fn status_in(mut self, set: &'static [u16]) -> Self {
        self.client = ClientSees::Answers(vec![Status::OneOf(set)]);
        self
    }

    /// These answers in order.
    pub fn statuses(mut self, statuses: &[u16]) -> Self {
        self.client = ClientSees::Answers(statuses.iter().map(|s| Status::Is(*s)).collect());
        self
    }

    pub fn http2(mut self) -> Self {
        self.client = ClientSees::Http2;
        self
    }

    /// The answers are followed by a close.
    pub fn closes(mut self) -> Self {
        self.close = Close::Must;
        self
    }

    /// The connection stays open after the answers.
    pub fn stays_open(mut self) -> Self {
        self.close = Close::MustNot;
        self
    }

    /// The backend receives exactly `bytes` ([`BACKEND`] for its authority).
    pub fn forwards(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.backend = BackendSees::Exactly(bytes.into());
        self
    }

    pub fn backend_answers(mut self, answer: &'static [u8]) -> Self {
        self.backend_answer = Some(answer);
        self
    }

    pub fn head_has(mut self, text: &'static str) -> Self {
        self.head_has.push(text);
        self
    }

    pub fn head_lacks(mut self, text: &'static str) -> Self {
        self.head_lacks.push(text);
        self
    }

    /// How many answers the client waits for.
    pub fn expected_answers(&self) -> usize {
        match &self.client {
            ClientSees::Answers(a) => a.len(),
            ClientSees::Http2 => 0,
        }
    }

    /// Sends the row to a proxy at `addr` (whose backend is already set up) and reads what
    /// comes back.
    pub async fn send_to(&self, addr: SocketAddr) -> Outcome {
        exchange(
            addr,
            &self.send,
            self.expected_answers(),
            self.close == Close::Must,
        )
        .await
    }

    /// Every way `outcome` and `received` (the backend's bytes, its authority `backend`) differ
    /// from the row's expectations; empty when the row holds.
    pub fn check(&self, outcome: &Outcome, received: &[u8], backend: SocketAddr) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(e) = &outcome.error {
            problems.push(format!("client: {e}"));
        }
        match &self.client {
            ClientSees::Http2 if !outcome.http2 => {
                problems.push(format!(
                    "client: expected an HTTP/2 SETTINGS frame, got {}",
                    outcome.summary()
                ));
            }
            ClientSees::Http2 => {}
            ClientSees::Answers(want) => {
                let got: Vec<u16> = outcome.answers.iter().map(|a| a.status).collect();
                let same = want.len() == got.len()
                    && want.iter().zip(&got).all(|(w, g)| w.matches(*g))
                    && !outcome.http2
                    && outcome.leftover.is_empty();
                if !same {
                    let want: Vec<String> = want.iter().map(Status::to_string).collect();
                    problems.push(format!(
                        "client: expected [{}], got {}{}",
                        want.join(" "),
                        outcome.summary(),
                        first_head(outcome)
                    ));
                }
            }
        }
        match (self.close, outcome.closed) {
            (Close::Must, false) => {
                problems.push("client: connection left open, must close".into())
            }
            (Close::MustNot, true) => {
                problems.push("client: connection closed, must stay open".into())
            }
            _ => {}
        }
        for answer in &outcome.answers {
            let head = answer.head.to_ascii_lowercase();
            for text in &self.head_has {
                if !head.contains(&text.to_ascii_lowercase()) {
                    problems.push(format!(
                        "client: answer head lacks `{text}`:\n{}",
                        answer.head
                    ));
                }
            }
            for text in &self.head_lacks {
                if head.contains(&text.to_ascii_lowercase()) {
                    problems.push(format!(
                        "client: answer head has `{text}`:\n{}",
                        answer.head
                    ));
                }
            }
        }
        let want = self.backend_bytes(backend);
        let got_nothing = received.is_empty();
        match &want {
            None if !got_nothing => problems.push(format!(
                "backend: expected nothing, received {} bytes:\n    {}",
                received.len(),
                escape(received)
            )),
            Some(want) if want.as_slice() != received => problems.push(format!(
                "backend: expected\n    {}\n  received\n    {}",
                escape(want),
                if got_nothing {
                    "(nothing)".into()
                } else {
                    escape(received)
                }
            )),
            _ => {}
        }
        problems
    }

    /// The bytes the backend must receive, `None` for nothing.
    pub fn backend_bytes(&self, backend: SocketAddr) -> Option<Vec<u8>> {
        match &self.backend {
            BackendSees::Nothing => None,
            BackendSees::Exactly(bytes) => {
                let text = String::from_utf8_lossy(bytes);
                Some(text.replace(BACKEND, &backend.to_string()).into_bytes())
            }
        }
    }

    /// The expectation as table text: `400 closed, backend: nothing`.
    pub fn expected_summary(&self) -> String {
        let client = match &self.client {
            ClientSees::Http2 => "h2".to_owned(),
            ClientSees::Answers(a) if a.is_empty() => "(no answer)".to_owned(),
            ClientSees::Answers(a) => a
                .iter()
                .map(Status::to_string)
                .collect::<Vec<_>>()
                .join(" "),
        };
        let close = match self.close {
            Close::Must => " closed",
            Close::MustNot => " open",
            Close::Either => "",
        };
        let backend = match self.backend {
            BackendSees::Nothing => "-",
            BackendSees::Exactly(_) => "B",
        };
        format!("{client}{close} {backend}")
    }
}

fn first_head(outcome: &Outcome) -> String {
    outcome
        .answers
        .first()
        .map(|a| {
            format!(
                "\n    first answer: {}",
                a.head.lines().next().unwrap_or_default()
            )
        })
        .unwrap_or_default()
}

/// Bytes as readable text: printable ASCII as is, the rest escaped (`\r\n` kept visible).
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::new();
    let shown = &bytes[..bytes.len().min(600)];
    for &b in shown {
        match b {
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    if bytes.len() > shown.len() {
        let _ = write!(out, "... ({} bytes in all)", bytes.len());
    }
    out
}

/// A sidecar (configured by [`sidecar_config`]) in front of its own capturing backend, on
/// which rows run one after another. Starting a sidecar is slow in a debug build (blocking work:
/// BENCHMARKS.md, "Figures behind code decisions"), so the test runs the table on a few lanes
/// rather than one sidecar per row.
#[derive(Debug)]
pub struct Lane {
    pub backend: RawBackend,
    pub sidecar: crate::RunningSidecar,
}

impl Lane {
    pub async fn start() -> Self {
        let backend = RawBackend::start()
            .await
            .expect("the capturing backend binds");
        let sidecar = crate::start(sidecar_config(backend.addr())).await;
        Self { backend, sidecar }
    }

    /// Runs `row`: the ways it failed, empty when it holds. What earlier rows sent the backend
    /// is forgotten first; each row has its own client connection.
    pub async fn run(&self, row: &Row) -> Vec<String> {
        self.backend.reset();
        if let Some(answer) = row.backend_answer {
            self.backend.set_answer(answer);
        }
        let outcome = row.send_to(self.sidecar.addr).await;
        row.check(&outcome, &self.backend.received(), self.backend.addr())
    }
}
