use super::*;

#[test]
fn event_frames_have_name_id_and_data() {
    assert_eq!(
        &Event::new("{}").name(EventName::MESSAGE).id(3).encode()[..],
        b"event: message\nid: 3\ndata: {}\n\n"
    );
    assert_eq!(
        &Event::new("a\nb").name(EventName::ENDPOINT).encode()[..],
        b"event: endpoint\ndata: a\ndata: b\n\n"
    );
    assert_eq!(&Event::new("").encode()[..], b"data: \n\n");
}

#[test]
fn data_is_split_at_every_line_ending() {
    // A bare CR ends an SSE line as LF does: written inside one `data:` line it would cut the
    // value there and turn the rest into a field of its own.
    assert_eq!(
        &Event::new("a\r\nb\rc\n\nd").encode()[..],
        b"data: a\ndata: b\ndata: c\ndata: \ndata: d\n\n"
    );
    assert_eq!(&Event::new("a\n").encode()[..], b"data: a\ndata: \n\n");
}

#[test]
fn text_ids_and_leading_spaces_are_written_as_given() {
    let id = EventId::new("stream-1/42").unwrap();
    assert_eq!(
        &Event::new(" x")
            .name(EventName::new(" y").unwrap())
            .id(id)
            .encode()[..],
        b"event:  y\nid: stream-1/42\ndata:  x\n\n"
    );
}

#[test]
fn names_and_ids_that_would_break_the_line_are_refused() {
    for name in ["a\nb", "a\r", "\r\ndata: x"] {
        assert_eq!(
            EventName::new(name),
            Err(InvalidField::LineBreak("event name"))
        );
        assert_eq!(EventId::new(name), Err(InvalidField::LineBreak("id")));
    }
    assert_eq!(EventId::new("a\0b"), Err(InvalidField::NulInId));
    // NUL only voids ids; in a name it is just a character.
    assert!(EventName::new("a\0b").is_ok());
    assert_eq!(
        InvalidField::LineBreak("id").to_string(),
        "an SSE id must not contain CR or LF"
    );
}

#[test]
fn encode_into_appends_to_what_is_there() {
    let mut out = BytesMut::from(&b": comment\n\n"[..]);
    Event::new("x").id(u64::MAX).encode_into(&mut out);
    assert_eq!(
        &out[..],
        b": comment\n\nid: 18446744073709551615\ndata: x\n\n"
    );
}

#[test]
fn a_static_name_is_the_name_new_would_make() {
    const STATUS: EventName<'static> = EventName::from_static("status");
    assert_eq!(Ok(STATUS), EventName::new("status"));
}

#[test]
#[should_panic(expected = "must not contain CR or LF")]
fn a_static_name_with_a_line_break_panics() {
    let _ = EventName::from_static("a\nb");
}
