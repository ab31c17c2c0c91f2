//! Unit tests of the request path's helpers: the request span across awaits and which answers get
//! an idle timeout.

use std::sync::{Arc, Mutex};

use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

use super::tail::{Awaits, Silence};
use super::*;
use http::StatusCode;

/// Records, for every event, the name of the span it was emitted in.
struct SpanOfEvents(Arc<Mutex<Vec<Option<&'static str>>>>);

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S>
    for SpanOfEvents
{
    fn on_event(&self, event: &tracing::Event<'_>, cx: Context<'_, S>) {
        let span = cx.event_span(event).map(|s| s.name());
        self.0.lock().unwrap().push(span);
    }
}

#[test]
fn only_an_open_ended_200_to_a_stream_request_has_no_idle_timeout() {
    let silence = |awaits| Silence {
        awaits,
        idle_timeout: std::time::Duration::from_secs(1),
    };
    let ok = StatusCode::OK;
    assert!(silence(Awaits::GetStream).is_normal(true, false, ok));
    assert!(silence(Awaits::Subscription).is_normal(true, false, ok));
    // A listen stream that is not SSE (chunked JSON) is standing too.
    assert!(silence(Awaits::Subscription).is_normal(false, false, ok));
    assert!(!silence(Awaits::Answer).is_normal(true, false, ok));
    // A GET answered without SSE, a length-delimited answer, an error: answers.
    assert!(!silence(Awaits::GetStream).is_normal(false, false, ok));
    assert!(!silence(Awaits::GetStream).is_normal(true, true, ok));
    assert!(!silence(Awaits::Subscription).is_normal(false, false, StatusCode::BAD_GATEWAY));
}

#[tokio::test]
async fn events_of_the_phases_are_in_the_request_span_across_awaits() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let subscriber = tracing_subscriber::registry().with(SpanOfEvents(seen.clone()));
    let _default = tracing::subscriber::set_default(subscriber);
    let span = tracing::debug_span!("request");
    let fut = pin!(async {
        tracing::info!("before");
        tokio::task::yield_now().await;
        tracing::info!("after");
        7
    });
    assert_eq!(polled_in(&span, fut).await, 7);
    tracing::info!("outside");
    assert_eq!(
        *seen.lock().unwrap(),
        [Some("request"), Some("request"), None]
    );
}
