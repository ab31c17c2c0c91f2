//! Toxiproxy's toxics: their kinds, attributes (Toxiproxy's names and units) and JSON shape, and
//! the validation that turns a client's JSON into a [`Toxic`], with errors naming the field.

use serde::Serialize;
use serde_json::{Map, Value};

/// Which way the data a toxic acts on flows (Toxiproxy's names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// Client → upstream (requests).
    Upstream,
    /// Upstream → client (responses); Toxiproxy's default.
    Downstream,
}

impl Stream {
    /// The Toxiproxy name of the stream.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Upstream => "upstream",
            Self::Downstream => "downstream",
        }
    }
}

/// What a toxic does, with Toxiproxy's attributes (durations in milliseconds unless noted).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", content = "attributes", rename_all = "snake_case")]
pub enum ToxicKind {
    /// Delays each chunk by `latency` ± `jitter` ms after it arrived.
    Latency { latency: u64, jitter: u64 },
    /// Caps the throughput at `rate` KB/s (1 KB = 1000 bytes, as Toxiproxy).
    Bandwidth { rate: u64 },
    /// Delays the close (the FIN) by `delay` ms once the source has closed.
    SlowClose { delay: u64 },
    /// Drops all data; closes the connection after `timeout` ms (0: never, until removed).
    Timeout { timeout: u64 },
    /// Resets the connection (RST, `SO_LINGER` 0) after `timeout` ms.
    ResetPeer { timeout: u64 },
    /// Closes the connection once `bytes` bytes have passed.
    LimitData { bytes: u64 },
    /// Splits the data into slices of `average_size` ± `size_variation` bytes, `delay` µs apart.
    Slicer {
        average_size: u64,
        size_variation: u64,
        delay: u64,
    },
}

/// The toxic kinds' names, for error messages.
pub const KINDS: &str = "latency, bandwidth, slow_close, timeout, reset_peer, limit_data, slicer";

impl ToxicKind {
    /// The Toxiproxy type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Latency { .. } => "latency",
            Self::Bandwidth { .. } => "bandwidth",
            Self::SlowClose { .. } => "slow_close",
            Self::Timeout { .. } => "timeout",
            Self::ResetPeer { .. } => "reset_peer",
            Self::LimitData { .. } => "limit_data",
            Self::Slicer { .. } => "slicer",
        }
    }

    /// The kind named `type_name` with `attributes` (missing ones are 0, as Toxiproxy's).
    pub fn from_attributes(type_name: &str, attrs: &Map<String, Value>) -> Result<Self, String> {
        let allowed: &[&str] = match type_name {
            "latency" => &["latency", "jitter"],
            "bandwidth" => &["rate"],
            "slow_close" => &["delay"],
            "timeout" | "reset_peer" => &["timeout"],
            "limit_data" => &["bytes"],
            "slicer" => &["average_size", "size_variation", "delay"],
            other => {
                return Err(format!(
                    "type: unknown toxic type `{other}` (one of {KINDS})"
                ));
            }
        };
        if let Some(k) = attrs.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(format!(
                "attributes.{k}: unknown attribute for a {type_name} toxic (expected {})",
                allowed.join(", ")
            ));
        }
        let get = |name: &str| -> Result<u64, String> {
            match attrs.get(name) {
                None => Ok(0),
                Some(v) => v.as_u64().ok_or_else(|| {
                    format!("attributes.{name}: expected a non-negative integer, got {v}")
                }),
            }
        };
        Ok(match type_name {
            "latency" => Self::Latency {
                latency: get("latency")?,
                jitter: get("jitter")?,
            },
            "bandwidth" => Self::Bandwidth { rate: get("rate")? },
            "slow_close" => Self::SlowClose {
                delay: get("delay")?,
            },
            "timeout" => Self::Timeout {
                timeout: get("timeout")?,
            },
            "reset_peer" => Self::ResetPeer {
                timeout: get("timeout")?,
            },
            "limit_data" => Self::LimitData {
                bytes: get("bytes")?,
            },
            _ => {
                let average_size = get("average_size")?;
                if average_size == 0 {
                    return Err("attributes.average_size: must be at least 1".to_owned());
                }
                Self::Slicer {
                    average_size,
                    size_variation: get("size_variation")?,
                    delay: get("delay")?,
                }
            }
        })
    }

    /// The attributes as Toxiproxy's JSON object.
    pub fn attributes(&self) -> Value {
        match serde_json::to_value(self) {
            Ok(Value::Object(mut m)) => m.remove("attributes").unwrap_or(Value::Null),
            _ => Value::Null,
        }
    }
}

/// One toxic on a proxy: Toxiproxy's `name`, `type`, `stream`, `toxicity`, `attributes`.
#[derive(Clone, Debug, PartialEq)]
pub struct Toxic {
    /// Unique within its proxy; Toxiproxy's default is `<type>_<stream>`.
    pub name: String,
    /// What it does.
    pub kind: ToxicKind,
    /// The direction it acts on.
    pub stream: Stream,
    /// The probability (0..=1) that it applies to a given connection.
    pub toxicity: f64,
}

impl Toxic {
    /// A toxic applying to every connection, named `<type>_<stream>`.
    pub fn new(kind: ToxicKind, stream: Stream) -> Self {
        Self {
            name: format!("{}_{}", kind.type_name(), stream.as_str()),
            kind,
            stream,
            toxicity: 1.0,
        }
    }

    /// The same toxic with another name.
    #[must_use]
    pub fn named(mut self, name: &str) -> Self {
        name.clone_into(&mut self.name);
        self
    }

    /// The same toxic applying to a connection with probability `toxicity`.
    #[must_use]
    pub fn with_toxicity(mut self, toxicity: f64) -> Self {
        self.toxicity = toxicity;
        self
    }

    /// A toxic from Toxiproxy's JSON (`type` required; `stream` defaults to downstream, `toxicity`
    /// to 1, `name` to `<type>_<stream>`).
    pub fn from_json(v: &Value) -> Result<Self, String> {
        let obj = v
            .as_object()
            .ok_or_else(|| "body: expected a JSON object".to_owned())?;
        if let Some(k) = obj
            .keys()
            .find(|k| !["name", "type", "stream", "toxicity", "attributes"].contains(&k.as_str()))
        {
            return Err(format!("{k}: unknown field"));
        }
        let type_name = match obj.get("type") {
            Some(Value::String(s)) => s.as_str(),
            Some(_) => return Err("type: expected a string".to_owned()),
            None => return Err(format!("type: missing (one of {KINDS})")),
        };
        let stream = match obj.get("stream") {
            None => Stream::Downstream,
            Some(Value::String(s)) if s == "downstream" => Stream::Downstream,
            Some(Value::String(s)) if s == "upstream" => Stream::Upstream,
            Some(v) => {
                return Err(format!(
                    "stream: expected \"upstream\" or \"downstream\", got {v}"
                ));
            }
        };
        let empty = Map::new();
        let attrs = match obj.get("attributes") {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(m)) => m,
            Some(_) => return Err("attributes: expected a JSON object".to_owned()),
        };
        let kind = ToxicKind::from_attributes(type_name, attrs)?;
        let mut toxic = Self::new(kind, stream);
        if let Some(t) = obj.get("toxicity") {
            toxic.toxicity = t
                .as_f64()
                .filter(|t| (0.0..=1.0).contains(t))
                .ok_or_else(|| format!("toxicity: expected a number from 0 to 1, got {t}"))?;
        }
        match obj.get("name") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if !s.is_empty() => toxic.name.clone_from(s),
            Some(v) => return Err(format!("name: expected a non-empty string, got {v}")),
        }
        Ok(toxic)
    }

    /// Applies a Toxiproxy update body (`toxicity` and/or `attributes`, merged into the current
    /// ones); `type`, `stream` and `name` cannot change.
    pub fn update_from_json(&self, v: &Value) -> Result<Self, String> {
        let obj = v
            .as_object()
            .ok_or_else(|| "body: expected a JSON object".to_owned())?;
        let mut merged = match self.to_json() {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        for (k, new) in obj {
            match k.as_str() {
                "attributes" => {
                    let new = new
                        .as_object()
                        .ok_or_else(|| "attributes: expected a JSON object".to_owned())?;
                    if let Some(Value::Object(cur)) = merged.get_mut("attributes") {
                        for (ak, av) in new {
                            cur.insert(ak.clone(), av.clone());
                        }
                    }
                }
                "toxicity" => {
                    merged.insert(k.clone(), new.clone());
                }
                "name" | "type" | "stream" if merged.get(k) == Some(new) => {}
                "name" | "type" | "stream" => return Err(format!("{k}: cannot be changed")),
                _ => return Err(format!("{k}: unknown field")),
            }
        }
        Self::from_json(&Value::Object(merged))
    }

    /// Toxiproxy's JSON for the toxic.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "name": self.name,
            "type": self.kind.type_name(),
            "stream": self.stream.as_str(),
            "toxicity": self.toxicity,
            "attributes": self.kind.attributes(),
        })
    }
}

#[cfg(test)]
#[path = "toxic_tests.rs"]
mod tests;
