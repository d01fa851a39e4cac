//! Evaluation: retrieval metrics and the Flickr30K / COCO protocols.

pub mod metrics;
pub mod score;

pub use metrics::{ensemble, evaluate, fold5, Metrics, Recall};
