//! A chat connection the test ends at will: it counts connections made and closed.

use crate::liveness::ExitRequest;
use crate::ports::{BoxFuture, Connection, Connector};
use crate::supervisor::RootMsg;
use crate::sync::LockExt;
use ractor::ActorRef;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

#[derive(Default)]
pub struct FakeConnector {
    made: AtomicUsize,
    closed: Arc<AtomicUsize>,
    /// How to end each live connection, newest last.
    enders: Mutex<Vec<mpsc::UnboundedSender<ExitRequest>>>,
}

impl FakeConnector {
    /// A connection (as the process makes the first one at start).
    pub fn connection(&self) -> Box<dyn Connection> {
        self.made.fetch_add(1, Ordering::AcqRel);
        let (end, ended) = mpsc::unbounded_channel();
        self.enders.lock_or_recover().push(end);
        Box::new(FakeConnection { ended, closed: self.closed.clone() })
    }

    /// Connections made so far.
    pub fn made(&self) -> usize {
        self.made.load(Ordering::Acquire)
    }

    pub fn closed(&self) -> usize {
        self.closed.load(Ordering::Acquire)
    }

    /// Ends the newest connection as Discord would, with what it means for the process.
    pub fn end_newest(&self, code: u8, why: &str) {
        if let Some(end) = self.enders.lock_or_recover().last() {
            let _ = end.send(ExitRequest { code, why: why.into() });
        }
    }
}

impl Connector for FakeConnector {
    fn connect(&self, _: ActorRef<RootMsg>) -> BoxFuture<'_, Result<Box<dyn Connection>, ExitRequest>> {
        Box::pin(async move { Ok(self.connection()) })
    }
}

struct FakeConnection {
    ended: mpsc::UnboundedReceiver<ExitRequest>,
    closed: Arc<AtomicUsize>,
}

impl Connection for FakeConnection {
    fn ended(&mut self) -> BoxFuture<'_, ExitRequest> {
        Box::pin(async move {
            match self.ended.recv().await {
                Some(why) => why,
                None => std::future::pending().await,
            }
        })
    }

    fn shutdown(self: Box<Self>) -> BoxFuture<'static, ()> {
        self.closed.fetch_add(1, Ordering::AcqRel);
        Box::pin(async {})
    }
}
