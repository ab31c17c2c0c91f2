//! Server-Sent Events, the framing of MCP's streamed answers: scanning a stream into events and
//! reading them ([`EventSplitter`], [`classify`], [`decode`]), and writing them ([`Event`]).
//!
//! What [`Event::encode`] writes, [`EventSplitter`] and [`decode`] read back as the same event
//! (the round trip is property-tested), so the mock server and the sidecar agree on the format by
//! construction.

mod encode;
mod scan;

pub use encode::{Event, EventId, EventName, InvalidField};
pub use scan::{DecodedEvent, EventKind, EventSplitter, classify, decode};

#[cfg(test)]
#[path = "round_trip_tests.rs"]
mod round_trip_tests;
