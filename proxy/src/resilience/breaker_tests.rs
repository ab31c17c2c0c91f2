use std::time::Duration;

use super::*;
use crate::resilience::machine::Outcome;

fn test_metrics() -> BreakerMetrics {
    BreakerMetrics {
        state: IntGauge::new("s", "s").unwrap(),
        rejections: IntCounter::new("r", "r").unwrap(),
        transitions: IntCounterVec::new(
            prometheus::Opts::new("t", "t"),
            &["upstream", "tool", "from", "to"],
        )
        .unwrap(),
    }
}

fn config(probes: u32) -> BreakerConfig {
    BreakerConfig {
        consecutive_failures: 1,
        half_open_probes: probes,
        open_duration: Duration::from_secs(1),
        ..BreakerConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_dropped_permit_releases_its_probe_and_metrics_follow_the_state() {
    let metrics = test_metrics();
    let b = Breaker::new("u".into(), None, &config(1), metrics.clone());
    b.try_acquire().unwrap().record(Outcome::Failure);
    assert_eq!(metrics.state.get(), 2);
    assert!(b.try_acquire().is_err());
    assert_eq!(metrics.rejections.get(), 1);
    tokio::time::advance(Duration::from_secs(1)).await;
    let probe = b.try_acquire().unwrap();
    assert_eq!(metrics.state.get(), 1);
    assert!(b.try_acquire().is_err());
    drop(probe);
    let probe = b.try_acquire().expect("the slot came back");
    probe.record(Outcome::Success);
    b.try_acquire().unwrap().record(Outcome::Success);
    assert_eq!(metrics.state.get(), 0);
    assert_eq!(
        metrics
            .transitions
            .with_label_values(&["u", "", "half_open", "closed"])
            .get(),
        1
    );
}

#[test]
fn concurrent_acquires_admit_exactly_the_probe_count() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        for probes in [1u32, 3] {
            let b = Breaker::new("u".into(), None, &config(probes), test_metrics());
            b.try_acquire().unwrap().record(Outcome::Failure);
            tokio::time::advance(Duration::from_secs(1)).await;
            let admitted = std::sync::Mutex::new(Vec::new());
            let handle = tokio::runtime::Handle::current();
            std::thread::scope(|scope| {
                for _ in 0..16 {
                    scope.spawn(|| {
                        // The runtime's (paused) clock, from another thread.
                        let _clock = handle.enter();
                        for _ in 0..50 {
                            if let Ok(p) = b.try_acquire() {
                                admitted.lock().unwrap().push(p);
                            }
                        }
                    });
                }
            });
            assert_eq!(admitted.lock().unwrap().len(), probes as usize);
        }
    });
}
