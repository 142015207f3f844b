//! The `sidekick` binary's adapters: llama.cpp, fjall, Prometheus, the console, and the wiring
//! that puts them under the actor tree of `sidekick-actors`.

pub mod backup;
pub mod config;
pub mod console;
pub mod control;
pub mod daemon;
pub mod dashboard;
pub mod discord;
pub mod eval;
pub mod files;
pub mod history;
pub mod learning;
pub mod llama;
pub mod memory;
pub mod metrics_http;
pub mod retrieval;
pub mod service;
pub mod signals;
pub mod store;
pub mod train;
pub mod web;
