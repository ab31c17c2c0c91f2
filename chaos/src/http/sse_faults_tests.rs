use std::collections::VecDeque;
use std::convert::Infallible;

use http_body_util::BodyExt;

use super::*;

/// A body yielding `pieces` as frames, then ending.
struct Pieces(VecDeque<&'static str>);

impl Body for Pieces {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(
            self.0
                .pop_front()
                .map(|p| Ok(Frame::data(Bytes::from_static(p.as_bytes())))),
        )
    }
}

fn body(pieces: &[&'static str], shape: SseShape) -> SseFaultBody<Pieces> {
    SseFaultBody::new(Pieces(pieces.iter().copied().collect()), shape)
}

async fn collect(body: SseFaultBody<Pieces>) -> String {
    let bytes = body.collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn cut_counts_events_split_across_frames_and_crlf() {
    let stream = [
        "data: 1\r",
        "\n\r\nda",
        "ta: 2\n",
        "\ndata: 3\n\ndata: 4\n\n",
    ];
    let out = collect(body(&stream, SseShape::CutAfter(2))).await;
    assert_eq!(out, "data: 1\r\n\r\ndata: 2\n\n");
}

#[tokio::test]
async fn cut_does_not_count_comment_blocks() {
    let stream = [": keepalive\n\ndata: 1\n\n: keepalive\n\ndata: 2\n\ndata: 3\n\n"];
    let out = collect(body(&stream, SseShape::CutAfter(1))).await;
    assert_eq!(out, ": keepalive\n\ndata: 1\n\n");
}

#[tokio::test]
async fn cut_after_zero_sends_nothing() {
    let out = collect(body(&["data: 1\n\n"], SseShape::CutAfter(0))).await;
    assert_eq!(out, "");
}

#[tokio::test]
async fn a_stream_shorter_than_the_cut_ends_as_it_came_with_its_unterminated_tail() {
    let out = collect(body(&["data: 1\n\ndata: par"], SseShape::CutAfter(5))).await;
    assert_eq!(out, "data: 1\n\ndata: par");
}

#[tokio::test(start_paused = true)]
async fn drip_holds_each_event_for_the_delay() {
    let gap = Duration::from_millis(250);
    let start = tokio::time::Instant::now();
    let mut b = body(&["data: 1\n\ndata: 2\n\n"], SseShape::Drip(gap));
    let mut at = Vec::new();
    while let Some(frame) = b.frame().await {
        frame.unwrap();
        at.push(start.elapsed());
    }
    assert_eq!(at, [gap, gap * 2]);
}
