//! The Discord connection is a child of the actor tree: killed (fault injection), it is seen
//! by the supervisor, which connects again, and the next mention is answered.

use crate::discord::{alice, bot_config, mention, owner, reply_to, start, BOT, CH1, CH2, GUILD, WAIT};
use crate::fake_discord::FakeDiscord;
use sidekick_actors::clock::SystemClock;
use sidekick_actors::supervisor::Child;
use sidekick_actors::RootMsg;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_gateway_is_restarted_by_the_supervisor_and_the_next_mention_is_answered() {
    let fake = FakeDiscord::start(BOT, owner(), GUILD, &[CH1, CH2]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = bot_config(dir.path(), &fake);
    let bot = start(&config, &fake, Arc::new(SystemClock)).await;
    let asked = mention(&fake, CH1, &alice(), "hello").await;
    assert!(!reply_to(&fake, asked).await.content().is_empty());

    let before = fake.connections();
    bot.daemon.root.send_message(RootMsg::InjectPanic(Child::Gateway)).unwrap();
    assert!(fake.wait_ready_after(before, WAIT).await, "the supervisor did not connect again");
    let restarts =
        || async { sidekick_actors::tree::status(&bot.daemon.root.get_derived(), Duration::from_secs(10)).await.unwrap().restarts };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while restarts().await != 1 {
        assert!(std::time::Instant::now() < deadline, "the restart was not counted as the tree's");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let again = mention(&fake, CH1, &alice(), "are you still there?").await;
    assert!(!reply_to(&fake, again).await.content().is_empty(), "the next mention is answered");
    assert!(bot.daemon.exit_requested().is_none(), "the process goes on");
    bot.stop().await;
}
