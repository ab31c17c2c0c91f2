//! Writing SSE events: `event:`, `id:` and `data:` lines and the blank line that ends the event.
//!
//! The single-line fields are checked when they are made ([`EventName::new`], [`EventId::new`]),
//! so an event can always be written: a CR or LF in a name or id would end its line and start
//! another field (an injected `data:` line, or the end of the event).

use bytes::{BufMut, Bytes, BytesMut};

/// A field value that cannot be written into an SSE line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidField {
    /// A CR or LF, which would end the line and start another field.
    #[error("an SSE {0} must not contain CR or LF")]
    LineBreak(&'static str),
    /// A NUL in an id, which makes clients ignore the id.
    #[error("an SSE id must not contain NUL")]
    NulInId,
}

/// An event type for the `event:` line: any text without CR or LF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventName<'a>(&'a str);

impl<'a> EventName<'a> {
    /// `message`, the type of the events that carry JSON-RPC messages (and the type clients
    /// assume when an event has none).
    pub const MESSAGE: EventName<'static> = EventName("message");
    /// `endpoint`, the legacy HTTP+SSE transport's first event: the URL to POST messages to.
    pub const ENDPOINT: EventName<'static> = EventName("endpoint");

    /// A name known when the program is written, checked at compile time when used in a
    /// `const` (a CR or LF panics, as `http::HeaderName::from_static` does).
    pub const fn from_static(name: &'static str) -> EventName<'static> {
        let bytes = name.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            assert!(
                bytes[i] != b'\r' && bytes[i] != b'\n',
                "an SSE event name must not contain CR or LF"
            );
            i += 1;
        }
        EventName(name)
    }

    /// Checks `name` for line breaks.
    pub fn new(name: &'a str) -> Result<Self, InvalidField> {
        if name.contains(['\r', '\n']) {
            return Err(InvalidField::LineBreak("event name"));
        }
        Ok(Self(name))
    }

    /// The name's text.
    pub fn as_str(&self) -> &'a str {
        self.0
    }
}

/// An event id for the `id:` line: a number, or text without CR, LF or NUL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventId<'a>(Id<'a>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Id<'a> {
    Number(u64),
    Text(&'a str),
}

impl<'a> EventId<'a> {
    /// Checks `id` for line breaks and NUL.
    pub fn new(id: &'a str) -> Result<Self, InvalidField> {
        if id.contains(['\r', '\n']) {
            return Err(InvalidField::LineBreak("id"));
        }
        if id.contains('\0') {
            return Err(InvalidField::NulInId);
        }
        Ok(Self(Id::Text(id)))
    }
}

impl From<u64> for EventId<'_> {
    fn from(id: u64) -> Self {
        Self(Id::Number(id))
    }
}

/// One event to write: optional type and id, and data of any text.
///
/// Data is written as one `data:` line per line of it, split at CRLF, CR or LF (a bare CR in a
/// `data:` line would end it early); a reader joins the lines with LF, so line endings inside
/// the data come back as LF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    name: Option<EventName<'a>>,
    id: Option<EventId<'a>>,
    data: &'a str,
}

impl<'a> Event<'a> {
    /// An event carrying `data`, with no type (`message` to a client) and no id.
    pub fn new(data: &'a str) -> Self {
        Self {
            name: None,
            id: None,
            data,
        }
    }

    /// Sets the event type.
    #[must_use]
    pub fn name(mut self, name: EventName<'a>) -> Self {
        self.name = Some(name);
        self
    }

    /// Sets the event id (clients send the last one back as `Last-Event-ID` when they resume).
    #[must_use]
    pub fn id(mut self, id: impl Into<EventId<'a>>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The event's bytes, ending with the blank line that dispatches it.
    pub fn encode(&self) -> Bytes {
        // Field names, separators and the line breaks: a few bytes per line.
        let mut out = BytesMut::with_capacity(self.data.len() + 32);
        self.encode_into(&mut out);
        out.freeze()
    }

    /// Appends the event's bytes to `out`.
    pub fn encode_into(&self, out: &mut BytesMut) {
        if let Some(name) = self.name {
            field(out, b"event", name.0.as_bytes());
        }
        match self.id.map(|id| id.0) {
            Some(Id::Number(n)) => field(out, b"id", itoa::Buffer::new().format(n).as_bytes()),
            Some(Id::Text(text)) => field(out, b"id", text.as_bytes()),
            None => {}
        }
        for line in data_lines(self.data) {
            field(out, b"data", line.as_bytes());
        }
        out.put_u8(b'\n');
    }
}

/// `name: value` and LF. The space is always written, so a value that starts with a space
/// keeps it (readers drop one space after the colon).
fn field(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.reserve(name.len() + value.len() + 3);
    out.put_slice(name);
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_u8(b'\n');
}

/// The lines of `data`, split at CRLF, CR or LF; an empty string is one empty line.
fn data_lines(data: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let text = rest?;
        match text.find(['\r', '\n']) {
            Some(end) => {
                let after = if text[end..].starts_with("\r\n") {
                    end + 2
                } else {
                    end + 1
                };
                rest = Some(&text[after..]);
                Some(&text[..end])
            }
            None => {
                rest = None;
                Some(text)
            }
        }
    })
}

#[cfg(test)]
#[path = "encode_tests.rs"]
mod tests;
