//! The gateway actor: holds the connection to Discord as a child of the tree, so its failure
//! is seen and restarted by the supervisor like any other child, within the same limits. A
//! connection that ends for a reason only the operator can fix (a refused token or intent:
//! exit code 2) ends the process instead; any other end is a failure, and the restart makes a
//! fresh connection.

use crate::liveness::{Exit, ExitRequest, EXIT_CONFIG};
use crate::ports::{Connection, Connector};
use crate::supervisor::RootMsg;
use crate::sync::LockExt;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// How long closing a connection may take at shutdown.
const CLOSE: Duration = Duration::from_secs(10);

pub enum GatewayMsg {
    /// The connection ended for good.
    Ended(ExitRequest),
    /// Fault injection for supervision tests: the handler panics.
    #[cfg(feature = "fault-injection")]
    InjectPanic,
}

pub struct GatewayArgs {
    pub connector: Arc<dyn Connector>,
    pub root: ActorRef<RootMsg>,
    /// The connection made at start (whose refusal the process reported at once); a restart
    /// makes its own.
    pub first: Arc<Mutex<Option<Box<dyn Connection>>>>,
    pub exit: Exit,
}

pub struct GatewayState {
    /// Dropping it (the actor stopped, or failed) closes the connection.
    close: Option<oneshot::Sender<()>>,
    watcher: Option<tokio::task::JoinHandle<()>>,
    exit: Exit,
}

pub struct GatewayActor;

impl Actor for GatewayActor {
    type Msg = GatewayMsg;
    type State = GatewayState;
    type Arguments = GatewayArgs;

    async fn pre_start(&self, myself: ActorRef<GatewayMsg>, args: GatewayArgs) -> Result<GatewayState, ActorProcessingErr> {
        let first = args.first.lock_or_recover().take();
        let mut connection = match first {
            Some(connection) => connection,
            None => args.connector.connect(args.root.clone()).await.map_err(|e| e.why)?,
        };
        let (close, closed) = oneshot::channel::<()>();
        // The connection lives in this task: it reports the end, or closes when told (or
        // when the actor is gone and `close` with it).
        let watcher = tokio::spawn(async move {
            tokio::select! {
                why = connection.ended() => {
                    let _ = myself.send_message(GatewayMsg::Ended(why));
                    connection.shutdown().await;
                }
                _ = closed => connection.shutdown().await,
            }
        });
        Ok(GatewayState { close: Some(close), watcher: Some(watcher), exit: args.exit })
    }

    async fn handle(&self, myself: ActorRef<GatewayMsg>, msg: GatewayMsg, state: &mut GatewayState) -> Result<(), ActorProcessingErr> {
        match msg {
            GatewayMsg::Ended(why) if why.code == EXIT_CONFIG => {
                // No reconnect fixes it: the process ends with the cause and the fix.
                state.exit.request(why.code, why.why);
                myself.stop(None);
                Ok(())
            }
            GatewayMsg::Ended(why) => Err(why.why.into()),
            #[cfg(feature = "fault-injection")]
            GatewayMsg::InjectPanic => panic!("injected panic in the gateway"),
        }
    }

    async fn post_stop(&self, _: ActorRef<GatewayMsg>, state: &mut GatewayState) -> Result<(), ActorProcessingErr> {
        // A graceful stop waits for the connection to close (intake stops before the drain).
        drop(state.close.take());
        if let Some(watcher) = state.watcher.take() {
            let _ = tokio::time::timeout(CLOSE, watcher).await;
        }
        Ok(())
    }
}
