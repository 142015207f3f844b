//! Sidekick's integration tests: one binary, real parts (model, store, processes, serenity
//! against a fake Discord).

mod actor_tree;
mod buttons;
mod cli;
mod console;
mod crash;
mod discord;
mod exits;
mod fake_discord;
mod gateway;
mod history;
mod intents;
mod learning;
mod operations;
mod privacy;
mod prometheus;
mod retention;
mod retrieval;
mod sandbox;
mod setup_script;
mod slash;
mod streaming;
mod support;
mod threads;
mod train;
