//! In-memory ports for actor tests (feature `test-support`): a store, a language model that
//! streams scripted tokens (or never answers), a retriever matching by shared words, and
//! learning that counts steps. Short on purpose: each implements only what the actors use.

mod gateway;
mod learning;
mod model;
mod retriever;
mod store;

pub use gateway::FakeConnector;
pub use learning::{adapter_version, FakeLearning, LearningLog};
pub use model::{Script, ScriptedLoader, ScriptedModel};
pub use retriever::{FakeRetriever, FakeRetrieverLoader};
pub use store::MemoryStore;
