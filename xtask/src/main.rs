//! `cargo xtask`: deployment rehearsal driven by pipeline.yaml.
mod config;
fn main() {}
