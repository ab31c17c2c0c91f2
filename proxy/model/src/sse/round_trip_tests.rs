//! What [`Event::encode`] writes, the scanner reads back: the same events, found at the same
//! boundaries however the stream is split, with the same type, id and data.

use proptest::prelude::*;

use super::*;

/// An event as generated: type, id (a number or text) and data, owned.
#[derive(Debug, Clone)]
struct Generated {
    name: Option<String>,
    id: Option<Result<u64, String>>,
    data: String,
}

impl Generated {
    fn event(&self) -> Event<'_> {
        let mut event = Event::new(&self.data);
        if let Some(name) = &self.name {
            event = event.name(EventName::new(name).unwrap());
        }
        match &self.id {
            Some(Ok(n)) => event = event.id(*n),
            Some(Err(text)) => event = event.id(EventId::new(text).unwrap()),
            None => {}
        }
        event
    }

    /// What a client makes of it: the default type, line endings in the data as LF.
    fn expected(&self) -> DecodedEvent {
        DecodedEvent {
            event_type: match self.name.as_deref() {
                None | Some("") => "message".to_owned(),
                Some(name) => name.to_owned(),
            },
            id: self.id.as_ref().map(|id| match id {
                Ok(n) => n.to_string(),
                Err(text) => text.clone(),
            }),
            data: self.data.replace("\r\n", "\n").replace('\r', "\n"),
        }
    }
}

fn generated() -> impl Strategy<Value = Generated> {
    let name = prop_oneof![
        Just("message".to_owned()),
        Just("endpoint".to_owned()),
        "[^\r\n]{0,12}",
    ];
    let id = prop_oneof![any::<u64>().prop_map(Ok), "[^\r\n\0]{0,12}".prop_map(Err)];
    let data = proptest::collection::vec(
        prop_oneof![
            4 => "[^\r\n]{0,10}",
            1 => Just("\r\n".to_owned()),
            1 => Just("\r".to_owned()),
            1 => Just("\n".to_owned()),
        ],
        0..6,
    )
    .prop_map(|parts| parts.concat());
    (proptest::option::of(name), proptest::option::of(id), data)
        .prop_map(|(name, id, data)| Generated { name, id, data })
}

/// Event ends (stream offsets) of `stream` fed to one splitter in pieces of the given lengths.
fn event_ends(stream: &[u8], pieces: &[usize]) -> Vec<usize> {
    let mut splitter = EventSplitter::default();
    let mut ends = Vec::new();
    let mut base = 0;
    for &len in pieces.iter().cycle() {
        if base == stream.len() {
            break;
        }
        let piece = &stream[base..stream.len().min(base + len)];
        let mut pos = 0;
        while let Some(end) = splitter.find_event_end(&piece[pos..]) {
            pos += end;
            ends.push(base + pos);
        }
        base += piece.len();
    }
    ends
}

proptest! {
    #[test]
    fn what_the_encoder_writes_the_scanner_reads_back(
        events in proptest::collection::vec(generated(), 1..5),
        pieces in proptest::collection::vec(1..16usize, 1..8),
    ) {
        let mut stream = bytes::BytesMut::new();
        let mut expected_ends = Vec::new();
        for generated in &events {
            generated.event().encode_into(&mut stream);
            expected_ends.push(stream.len());
        }
        prop_assert_eq!(&event_ends(&stream, &pieces), &expected_ends);

        let mut start = 0;
        for (generated, &end) in events.iter().zip(&expected_ends) {
            let bytes = &stream[start..end];
            prop_assert_eq!(decode(bytes, start == 0), Some(generated.expected()));
            // The sidecar's endpoint rewrite sees the same event: an `endpoint` with one line
            // of data is rewritable at exactly that data.
            let kind = classify(bytes, start == 0);
            match (generated.name.as_deref(), generated.expected().data) {
                (Some("endpoint"), data) if !data.contains('\n') => {
                    let EventKind::Endpoint(range) = kind else {
                        return Err(TestCaseError::fail(format!("{kind:?}")));
                    };
                    prop_assert_eq!(&bytes[range], data.as_bytes());
                }
                (Some("endpoint"), _) => prop_assert_eq!(kind, EventKind::UnsupportedEndpoint),
                _ => prop_assert_eq!(kind, EventKind::Other),
            }
            start = end;
        }
    }
}
