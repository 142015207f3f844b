//! The Discord connection as a child of the tree: a failure is restarted by the supervisor
//! with the same limits as any other child, a close only the operator can fix ends the
//! process, and a stopping tree closes it first.

mod support;

use sidekick_actors::supervisor::Child;
use sidekick_actors::testing::FakeConnector;
use sidekick_actors::RootMsg;
use std::sync::Arc;
use std::time::Duration;
use support::{Setup, Tree};

async fn connected() -> (Tree, Arc<FakeConnector>) {
    let tree = Setup::default().start().await;
    let connector = Arc::new(FakeConnector::default());
    let first = connector.connection();
    tree.root.send_message(RootMsg::Connected { connector: connector.clone(), first }).unwrap();
    (tree, connector)
}

#[tokio::test(start_paused = true)]
async fn a_gateway_that_panics_is_restarted_with_a_fresh_connection() {
    let (tree, connector) = connected().await;
    tree.root.send_message(RootMsg::InjectPanic(Child::Gateway)).unwrap();
    tree.until("a fresh connection", || connector.made() == 2).await;
    tree.until("the old one closed", || connector.closed() == 1).await;
    tree.until_restarts(1).await;
    // A connection that ends for a reason a reconnect may fix is a failure too.
    connector.end_newest(1, "the Discord connection ended: reset by peer");
    tree.until("another connection", || connector.made() == 3).await;
    tree.until_restarts(2).await;
    assert!(tree.exit.borrow().is_none(), "the process goes on");
}

#[tokio::test(start_paused = true)]
async fn a_close_only_the_operator_can_fix_ends_the_process_without_reconnecting() {
    let (tree, connector) = connected().await;
    connector.end_newest(2, "Discord closed the connection with 4004: the token was refused");
    let mut exit = tree.exit.clone();
    tokio::time::timeout(Duration::from_secs(5), exit.wait_for(Option::is_some)).await.unwrap().unwrap();
    let asked = tree.exit.borrow().clone().unwrap();
    assert_eq!((asked.code, asked.why.as_str()), (2, "Discord closed the connection with 4004: the token was refused"));
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(connector.made(), 1, "no reconnect");
}

#[tokio::test(start_paused = true)]
async fn a_gateway_failing_beyond_the_limits_ends_the_process_for_a_fresh_start() {
    let (tree, connector) = connected().await;
    for made in 2..=6 {
        tree.root.send_message(RootMsg::InjectPanic(Child::Gateway)).unwrap();
        tree.until("a fresh connection", || connector.made() == made).await;
    }
    tree.root.send_message(RootMsg::InjectPanic(Child::Gateway)).unwrap();
    tokio::time::timeout(Duration::from_secs(5), tree.join).await.expect("the root stopped").unwrap();
    let asked = tree.exit.borrow().clone().expect("the process is asked to end");
    assert_eq!(asked.code, 1);
    assert!(asked.why.starts_with("the gateway actor failed 6 times"), "{}", asked.why);
}

#[tokio::test(start_paused = true)]
async fn a_draining_tree_closes_the_connection_first() {
    let (tree, connector) = connected().await;
    let _ = tree.root.call(|port| RootMsg::Drain(Duration::from_secs(1), port), Some(Duration::from_secs(30))).await.unwrap();
    assert_eq!(connector.closed(), 1, "closed before the drain answered");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(connector.made(), 1, "and not made again");
}
