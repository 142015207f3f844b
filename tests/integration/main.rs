//! Sidekick's integration tests: one binary, real parts (model, store, processes).

mod actor_tree;
mod cli;
mod support;
