use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::SystemTime;

use opentelemetry::InstrumentationScope;
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};

use super::*;

fn span(sampled: bool) -> SpanData {
    SpanData {
        span_context: SpanContext::new(
            TraceId::from(1u128),
            SpanId::from(1u64),
            if sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            },
            false,
            TraceState::NONE,
        ),
        parent_span_id: SpanId::INVALID,
        parent_span_is_remote: false,
        span_kind: SpanKind::Server,
        name: "POST".into(),
        start_time: SystemTime::UNIX_EPOCH,
        end_time: SystemTime::UNIX_EPOCH,
        attributes: Vec::new(),
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: Status::Unset,
        instrumentation_scope: InstrumentationScope::builder("test").build(),
    }
}

fn metrics() -> ExportMetrics {
    ExportMetrics::new(&Registry::new()).unwrap()
}

fn dropped(m: &ExportMetrics, reason: &str) -> u64 {
    m.dropped.with_label_values(&[reason]).get()
}

/// Counts what it is given; fails every export while `fail` is set.
#[derive(Debug, Default, Clone)]
struct Fake {
    spans: Arc<AtomicUsize>,
    exports: Arc<AtomicUsize>,
    fail: Arc<AtomicBool>,
}

impl SpanExporter for Fake {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.exports.fetch_add(1, Ordering::SeqCst);
        if self.fail.load(Ordering::SeqCst) {
            return Err(opentelemetry_sdk::error::OTelSdkError::InternalFailure(
                "collector down".into(),
            ));
        }
        self.spans.fetch_add(batch.len(), Ordering::SeqCst);
        Ok(())
    }
}

#[test]
fn a_full_queue_drops_the_span_and_counts_it_without_waiting() {
    let m = metrics();
    let (tx, _rx) = mpsc::channel(1);
    let p = QueueProcessor::new(tx, &m);
    p.on_end(span(true));
    p.on_end(span(true));
    p.on_end(span(true));
    assert_eq!(dropped(&m, "queue_full"), 2);
}

#[test]
fn an_unsampled_span_is_never_queued() {
    let m = metrics();
    let (tx, mut rx) = mpsc::channel(4);
    QueueProcessor::new(tx, &m).on_end(span(false));
    assert!(rx.try_recv().is_err());
    assert_eq!(dropped(&m, "queue_full"), 0);
}

#[tokio::test(start_paused = true)]
async fn spans_are_exported_in_batches_and_the_rest_at_shutdown() {
    let m = metrics();
    let fake = Fake::default();
    let (tx, rx) = mpsc::channel(QUEUE_SPANS);
    let stop = Arc::new(Notify::new());
    let task = tokio::spawn(run_exports(
        fake.clone(),
        rx,
        stop.clone(),
        m.clone(),
        Duration::from_secs(1),
    ));
    for _ in 0..(BATCH_SPANS + 3) {
        tx.try_send(span(true)).unwrap();
    }
    // A full batch goes at once; the rest after the batch delay.
    tokio::time::sleep(BATCH_DELAY * 2).await;
    assert_eq!(fake.spans.load(Ordering::SeqCst), BATCH_SPANS + 3);
    assert_eq!(fake.exports.load(Ordering::SeqCst), 2);
    // At shutdown what is queued goes out before the task ends.
    for _ in 0..5 {
        tx.try_send(span(true)).unwrap();
    }
    stop.notify_one();
    task.await.unwrap();
    assert_eq!(fake.spans.load(Ordering::SeqCst), BATCH_SPANS + 8);
    assert_eq!(m.exported.get(), (BATCH_SPANS + 8) as u64);
}

#[tokio::test(start_paused = true)]
async fn failed_exports_drop_their_spans_counted_and_the_next_batch_still_goes() {
    let m = metrics();
    let fake = Fake::default();
    fake.fail.store(true, Ordering::SeqCst);
    let (tx, rx) = mpsc::channel(QUEUE_SPANS);
    let stop = Arc::new(Notify::new());
    let task = tokio::spawn(run_exports(
        fake.clone(),
        rx,
        stop.clone(),
        m.clone(),
        Duration::from_secs(1),
    ));
    for _ in 0..3 {
        tx.try_send(span(true)).unwrap();
    }
    tokio::time::sleep(BATCH_DELAY * 2).await;
    assert_eq!(dropped(&m, "export_failed"), 3);
    fake.fail.store(false, Ordering::SeqCst);
    tx.try_send(span(true)).unwrap();
    tokio::time::sleep(BATCH_DELAY * 2).await;
    assert_eq!(m.exported.get(), 1);
    drop(tx);
    task.await.unwrap();
}

/// An exporter that never answers.
#[derive(Debug)]
struct Stalled;

impl SpanExporter for Stalled {
    async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
        std::future::pending().await
    }
}

#[tokio::test(start_paused = true)]
async fn a_stalled_collector_costs_one_export_timeout_per_batch() {
    let m = metrics();
    let (tx, rx) = mpsc::channel(QUEUE_SPANS);
    let stop = Arc::new(Notify::new());
    let task = tokio::spawn(run_exports(
        Stalled,
        rx,
        stop.clone(),
        m.clone(),
        Duration::from_secs(2),
    ));
    tx.try_send(span(true)).unwrap();
    tokio::time::sleep(BATCH_DELAY + Duration::from_secs(3)).await;
    assert_eq!(dropped(&m, "export_failed"), 1);
    stop.notify_one();
    task.await.unwrap();
}
