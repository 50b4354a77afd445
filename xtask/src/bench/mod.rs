//! The load benchmark: closed- and open-model HTTP load, HDR latency statistics, thresholds,
//! container resource sampling and SVG charts. Measuring (`run`, `resources`) is kept apart
//! from judging (`evaluate`) and displaying (`svg`).

// The re-exports are the API the pipeline's `bench` stage uses; the binary may not use all yet.
#![allow(unused_imports)]

mod client;
mod engine;
mod http1;
#[cfg(test)]
pub(crate) mod loopback;
mod resources;
mod result;
mod spec;
mod stats;
mod svg;
mod template;
mod threshold;
mod timeline;
mod worker;

pub use engine::run;
pub use resources::{ContainerResources, ResourceSampler, ResourceSummary};
pub use result::BenchResult;
pub use spec::{LoadSpec, Model, Stop, WeightedRequest};
pub use stats::{ErrorCounts, LatencySummary};
pub use svg::{latency_svg, throughput_svg};
pub use threshold::{Threshold, Verdict, evaluate};
pub use timeline::SecondSample;
pub use worker::LATE_SLACK;

#[cfg(test)]
mod tests;
