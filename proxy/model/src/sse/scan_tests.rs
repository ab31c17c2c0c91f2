use super::*;

/// Event boundaries of `input` fed to one splitter in the given pieces, as stream offsets.
fn boundaries(pieces: &[&[u8]]) -> Vec<usize> {
    let mut splitter = EventSplitter::default();
    let mut found = Vec::new();
    let mut base = 0;
    for piece in pieces {
        let mut pos = 0;
        while let Some(end) = splitter.find_event_end(&piece[pos..]) {
            pos += end;
            found.push(base + pos);
        }
        base += piece.len();
    }
    found
}

#[test]
fn events_end_at_blank_lines_with_any_line_ending() {
    assert_eq!(boundaries(&[b"data: a\n\ndata: b\n\n"]), vec![9, 18]);
    // A CRLF blank line ends after its LF when the LF is already there.
    assert_eq!(boundaries(&[b"data: a\r\n\r\ndata: b"]), vec![11]);
    assert_eq!(boundaries(&[b"data: a\r\rdata: b\r\r"]), vec![9, 18]);
    assert_eq!(boundaries(&[b"data: a\r\n\n"]), vec![10]);
}

#[test]
fn crlf_split_across_pieces_is_one_terminator() {
    assert_eq!(boundaries(&[b"data: a\r", b"\n", b"\r", b"\n"]), vec![10]);
    assert_eq!(
        boundaries(&[b"data: a\r", b"\ndata: b\r\n"]),
        Vec::<usize>::new()
    );
}

#[test]
fn lf_completing_a_crlf_blank_line_is_not_another_event() {
    // "\r\r\n": CR ends the data line, CRLF ends the blank line; the LF belongs to the same terminator.
    assert_eq!(boundaries(&[b"data: a\r\r", b"\ndata: b\n\n"]), vec![9, 19]);
}

#[test]
fn classifies_endpoint_events_with_and_without_space() {
    let event = b"event: endpoint\ndata: /messages?sessionId=1\n\n";
    let EventKind::Endpoint(range) = classify(event, true) else {
        panic!("not endpoint")
    };
    assert_eq!(&event[range], b"/messages?sessionId=1");

    let event = b"event:endpoint\r\ndata:/m\r\n\r\n";
    let EventKind::Endpoint(range) = classify(event, false) else {
        panic!("not endpoint")
    };
    assert_eq!(&event[range], b"/m");
}

#[test]
fn leading_lf_of_previous_crlf_and_bom_are_ignored() {
    let event = b"\nevent: endpoint\r\ndata: /m\r\n\r\n";
    assert!(matches!(classify(event, false), EventKind::Endpoint(_)));
    let event = "\u{feff}event: endpoint\ndata: /m\n\n";
    assert!(matches!(
        classify(event.as_bytes(), true),
        EventKind::Endpoint(_)
    ));
    assert_eq!(classify(event.as_bytes(), false), EventKind::Other);
}

#[test]
fn other_events_comments_and_dataless_endpoints_are_not_rewritten() {
    assert_eq!(
        classify(b"event: message\ndata: {}\n\n", false),
        EventKind::Other
    );
    assert_eq!(
        classify(b": event: endpoint\ndata: /m\n\n", false),
        EventKind::Other
    );
    assert_eq!(classify(b"event: endpoint\n\n", false), EventKind::Ignored);
    assert_eq!(classify(b": ping\n\n", false), EventKind::Ignored);
    assert_eq!(
        classify(b"event: endpoint\nevent: message\ndata: /m\n\n", false),
        EventKind::Other
    );
    assert_eq!(classify(b"data: /m\n\n", false), EventKind::Other);
    assert_eq!(
        classify(b"event: endpoint\ndata: /a\ndata: /b\n\n", false),
        EventKind::UnsupportedEndpoint
    );
}

#[test]
fn decode_reads_type_id_and_joined_data() {
    let decoded = decode(
        b"event: progress\nid: 7\ndata: a\r\ndata:b\rdata\n\n",
        false,
    )
    .unwrap();
    assert_eq!(
        decoded,
        DecodedEvent {
            event_type: "progress".into(),
            id: Some("7".into()),
            data: "a\nb\n".into(),
        }
    );
}

#[test]
fn decode_defaults_the_type_and_ignores_what_clients_ignore() {
    let decoded = decode(
        "\u{feff}: hi\nevent:\nid: a\0b\nretry: 10\nfoo: bar\ndata: x\n\n".as_bytes(),
        true,
    )
    .unwrap();
    assert_eq!(decoded.event_type, "message");
    assert_eq!(decoded.id, None);
    assert_eq!(decoded.data, "x");
    // The last `event` and `id` fields win.
    let decoded = decode(b"id: 1\nevent: a\nid: 2\nevent: b\ndata:\n\n", false).unwrap();
    assert_eq!(
        (
            decoded.event_type.as_str(),
            decoded.id.as_deref(),
            decoded.data.as_str()
        ),
        ("b", Some("2"), "")
    );
}

#[test]
fn decode_skips_blocks_a_client_does_not_dispatch() {
    assert_eq!(decode(b": keepalive\n\n", false), None);
    assert_eq!(decode(b"event: endpoint\nid: 3\n\n", false), None);
}

#[test]
fn decode_replaces_invalid_utf8_as_clients_do() {
    let decoded = decode(b"data: a\xffb\n\n", false).unwrap();
    assert_eq!(decoded.data, "a\u{fffd}b");
}
