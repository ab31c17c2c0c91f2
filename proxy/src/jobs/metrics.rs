//! The job engine's metrics, registered into the sidecar's registry. Labels are bounded:
//! `upstream` comes from config, `status`, `reason` and `op` are fixed sets.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Queue waits and run times span milliseconds to hours.
const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.025, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14400.0,
];
/// Store operations take microseconds in memory, milliseconds when they wait for fsync.
const STORE_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.1, 0.5,
];

/// Every metric of the job engine.
#[derive(Debug, Clone)]
pub struct JobMetrics {
    /// `mcp_sidecar_jobs_submitted_total{upstream}`: jobs stored (idempotent replays excluded).
    pub submitted: IntCounterVec,
    /// `mcp_sidecar_jobs_refused_total{upstream,reason}`: submissions refused (`queue_full`,
    /// `shutting_down`, `store`).
    pub refused: IntCounterVec,
    /// `mcp_sidecar_jobs_replayed_total{upstream}`: submissions answered with an existing job
    /// by their `Idempotency-Key`.
    pub replayed: IntCounterVec,
    /// `mcp_sidecar_jobs_finished_total{upstream,status}`: `completed`, `failed`, `cancelled`.
    pub finished: IntCounterVec,
    /// `mcp_sidecar_jobs_running{upstream}`.
    pub running: IntGaugeVec,
    /// `mcp_sidecar_jobs_queued{upstream}`.
    pub queued: IntGaugeVec,
    /// `mcp_sidecar_jobs_queue_capacity`: `jobs.max_queued`, the bound on the sum of `queued`
    /// over all upstreams (so an alert can divide by it).
    pub queue_capacity: IntGauge,
    /// `mcp_sidecar_jobs_queue_wait_seconds{upstream}`: submission to first send.
    pub queue_wait: HistogramVec,
    /// `mcp_sidecar_jobs_run_duration_seconds{upstream,status}`: first send to the end.
    pub run_duration: HistogramVec,
    /// `mcp_sidecar_job_store_errors_total{op}`.
    pub store_errors: IntCounterVec,
    /// `mcp_sidecar_job_store_operation_seconds{op}`.
    pub store_latency: HistogramVec,
}

impl JobMetrics {
    /// Creates the metrics and registers them into `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels)
        };
        let gauge = |name: &str, help: &str| IntGaugeVec::new(Opts::new(name, help), &["upstream"]);
        let histogram = |name: &str, help: &str, buckets: &[f64], labels: &[&str]| {
            HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                labels,
            )
        };
        let m = Self {
            submitted: counter(
                "mcp_sidecar_jobs_submitted_total",
                "Jobs accepted and stored.",
                &["upstream"],
            )?,
            refused: counter(
                "mcp_sidecar_jobs_refused_total",
                "Job submissions refused, by reason.",
                &["upstream", "reason"],
            )?,
            replayed: counter(
                "mcp_sidecar_jobs_replayed_total",
                "Submissions answered with an existing job by their Idempotency-Key.",
                &["upstream"],
            )?,
            finished: counter(
                "mcp_sidecar_jobs_finished_total",
                "Jobs that reached a terminal status, by status.",
                &["upstream", "status"],
            )?,
            running: gauge("mcp_sidecar_jobs_running", "Jobs whose call is running.")?,
            queued: gauge("mcp_sidecar_jobs_queued", "Jobs waiting to run.")?,
            queue_capacity: IntGauge::new(
                "mcp_sidecar_jobs_queue_capacity",
                "Jobs that may wait to run over all upstreams (jobs.max_queued); submissions \
                 past it are refused with queue_full.",
            )?,
            queue_wait: histogram(
                "mcp_sidecar_jobs_queue_wait_seconds",
                "Time from a job's submission to its first send.",
                DURATION_BUCKETS,
                &["upstream"],
            )?,
            run_duration: histogram(
                "mcp_sidecar_jobs_run_duration_seconds",
                "Time from a job's first send to its end, by final status.",
                DURATION_BUCKETS,
                &["upstream", "status"],
            )?,
            store_errors: counter(
                "mcp_sidecar_job_store_errors_total",
                "Job store operations that failed, by operation.",
                &["op"],
            )?,
            store_latency: histogram(
                "mcp_sidecar_job_store_operation_seconds",
                "Job store operation latency, by operation.",
                STORE_BUCKETS,
                &["op"],
            )?,
        };
        registry.register(Box::new(m.submitted.clone()))?;
        registry.register(Box::new(m.refused.clone()))?;
        registry.register(Box::new(m.replayed.clone()))?;
        registry.register(Box::new(m.finished.clone()))?;
        registry.register(Box::new(m.running.clone()))?;
        registry.register(Box::new(m.queued.clone()))?;
        registry.register(Box::new(m.queue_capacity.clone()))?;
        registry.register(Box::new(m.queue_wait.clone()))?;
        registry.register(Box::new(m.run_duration.clone()))?;
        registry.register(Box::new(m.store_errors.clone()))?;
        registry.register(Box::new(m.store_latency.clone()))?;
        Ok(m)
    }

    /// Shows every upstream's gauges at zero from the start (a missing series is not zero to
    /// an alert).
    pub fn init_upstream(&self, upstream: &str) {
        self.running.with_label_values(&[upstream]).set(0);
        self.queued.with_label_values(&[upstream]).set(0);
        self.submitted.with_label_values(&[upstream]);
        // The series alerts divide by (failed over finished) and watch (refusals), at 0.
        for status in ["completed", "failed", "cancelled"] {
            self.finished.with_label_values(&[upstream, status]);
        }
        for reason in ["queue_full", "shutting_down", "store"] {
            self.refused.with_label_values(&[upstream, reason]);
        }
    }
}
