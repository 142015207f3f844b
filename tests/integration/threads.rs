//! `model.threads = auto` reaches llama.cpp: the engine's context can change its thread count
//! between steps (llama-cpp-2 hides the pointer this needs; an upgrade that changes how it
//! shows it fails here, not silently in production).

use crate::support::{model_path, test_config};
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use sidekick::config::ModelThreads;

#[test]
fn the_engines_context_can_change_its_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.model.threads = ModelThreads::Auto;
    let backend = sidekick::llama::backend().unwrap();
    let model = LlamaModel::load_from_file(backend, model_path(), &LlamaModelParams::default()).unwrap();
    let params = sidekick::llama::context_params(&sidekick::daemon::engine_config(&config));
    let ctx = model.new_context(backend, params).unwrap();
    assert!(sidekick::llama::can_set_threads(&ctx), "llama_set_n_threads cannot be reached: model.threads = auto would be fixed");
}
