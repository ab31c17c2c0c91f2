//! The job engine: calls answered with HTTP 202 and run in the background (issue 16).

pub mod model;
pub mod store;
