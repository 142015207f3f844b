//! The chat service's connection (Discord), as the gateway actor holds it. The binary's
//! adapter is serenity's client; tests use [`crate::testing`]'s.

use crate::liveness::ExitRequest;
use crate::supervisor::RootMsg;
use ractor::ActorRef;
use std::future::Future;
use std::pin::Pin;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One live connection: events from it go to the tree's root.
pub trait Connection: Send + 'static {
    /// Resolves when the connection ends for good, with what that means for the process.
    fn ended(&mut self) -> BoxFuture<'_, ExitRequest>;
    /// Closes it; replies already in the tree still finish.
    fn shutdown(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// Makes a fresh connection each time the gateway actor (re)starts.
pub trait Connector: Send + Sync + 'static {
    /// A new connection routing to `root`; what the refusal means for the process otherwise.
    fn connect(&self, root: ActorRef<RootMsg>) -> BoxFuture<'_, Result<Box<dyn Connection>, ExitRequest>>;
}
