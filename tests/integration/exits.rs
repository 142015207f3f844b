//! A daemon that can no longer do its job ends, with a code systemd acts on: 1 to be
//! restarted, 2 for what only the operator can fix. systemd hears when it is ready and alive.

use crate::discord::{alice, mention, owner, reply_to, BOT, CH1, GUILD};
use crate::fake_discord::FakeDiscord;
use crate::support::{daemon_stderr, exit_code, sigkill, spawn_connected_daemon, spawn_daemon};
use sidekick::control::{self, Request, Response};
use std::time::{Duration, Instant};

async fn restarts(dir: &std::path::Path) -> u64 {
    match control::ask(&dir.join("store/sidekick.sock"), &Request::Status).await {
        Ok(Response::Status(s)) => s.restarts,
        _ => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_model_panics_within_a_minute_end_the_process_with_code_1() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDiscord::start(BOT, owner(), GUILD, &[CH1]).await;
    let mut daemon = spawn_connected_daemon(dir.path(), &fake, &[("SIDEKICK_FAULT_INJECTION", "1")]).await;
    let id = mention(&fake, CH1, &alice(), "hello").await;
    reply_to(&fake, id).await;
    let started = Instant::now();
    for i in 1..=6u64 {
        let asked = control::ask(&dir.path().join("store/sidekick.sock"), &Request::Panic { actor: "model".into() }).await;
        assert!(matches!(asked, Ok(Response::Done)), "{asked:?}");
        if i < 6 {
            let deadline = Instant::now() + Duration::from_secs(30);
            while restarts(dir.path()).await < i {
                assert!(Instant::now() < deadline, "restart {i} did not happen");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    assert!(started.elapsed() < Duration::from_secs(60), "six failures within the minute");
    let code = exit_code(&mut daemon, Duration::from_secs(30)).await;
    let stderr = daemon_stderr(dir.path());
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("sidekick: the model actor failed 6 times within 1m 00s"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_discord_refuses_exits_2_naming_the_token_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDiscord::start(BOT, owner(), GUILD, &[CH1]).await;
    fake.close_on_identify(4004);
    let mut daemon = spawn_daemon(dir.path(), &fake, &[]);
    let code = exit_code(&mut daemon, Duration::from_secs(60)).await;
    let stderr = daemon_stderr(dir.path());
    assert_eq!(code, Some(2), "{stderr}");
    let line = stderr.lines().find(|l| l.starts_with("sidekick: Discord closed")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.contains("4004") && line.contains("token was refused") && line.contains("DISCORD_TOKEN in .env"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discord_unreachable_for_longer_than_allowed_ends_the_process_with_code_1() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDiscord::start(BOT, owner(), GUILD, &[CH1]).await;
    // serenity notices a lost connection at its next heartbeat.
    fake.heartbeat_every(2_000);
    let mut daemon = spawn_connected_daemon(dir.path(), &fake, &[("SIDEKICK_DISCORD_MAX_DISCONNECTED_SECONDS", "10")]).await;
    fake.go_dark().await;
    let code = exit_code(&mut daemon, Duration::from_secs(60)).await;
    let stderr = daemon_stderr(dir.path());
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("sidekick: Discord has been unreachable for 1"), "{stderr}");
}

/// systemd's notify protocol, with a datagram socket standing in for systemd.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_hears_ready_once_connected_then_watchdog_pings() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = tokio::net::UnixDatagram::bind(&socket_path).unwrap();
    let fake = FakeDiscord::start(BOT, owner(), GUILD, &[CH1]).await;
    let mut daemon = spawn_daemon(dir.path(), &fake, &[("NOTIFY_SOCKET", socket_path.to_str().unwrap())]);
    let mut heard: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut buf = [0u8; 512];
    let pinged_after_ready = |heard: &[String]| heard.iter().skip_while(|h| !h.contains("READY=1")).any(|h| h.contains("WATCHDOG=1"));
    while !pinged_after_ready(&heard) {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Ok(n)) = tokio::time::timeout(left, socket.recv(&mut buf)).await else { break };
        heard.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    sigkill(&mut daemon);
    let ready = heard.iter().position(|h| h.contains("READY=1")).unwrap_or_else(|| panic!("no READY=1 in {heard:?}"));
    assert!(fake.connections() >= 1, "READY=1 came with a Discord connection");
    assert!(heard[ready..].iter().any(|h| h.contains("WATCHDOG=1")), "{heard:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_refused_at_startup_exits_2_too() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDiscord::start(BOT, owner(), GUILD, &[CH1]).await;
    fake.refuse_token();
    let mut daemon = spawn_daemon(dir.path(), &fake, &[]);
    let code = exit_code(&mut daemon, Duration::from_secs(60)).await;
    let stderr = daemon_stderr(dir.path());
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("sidekick: Discord refused the token (401 Unauthorized)"), "{stderr}");
}

/// The drain lets the reply in progress finish, sends it, then the process ends. (It used to
/// hang for good: once the last reply ended, the engine waited for a command before looking
/// at its shutdown deadline again.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_reply_sends_it_then_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDiscord::start(BOT, owner(), GUILD, &[CH1]).await;
    let mut daemon = spawn_connected_daemon(dir.path(), &fake, &[("SIDEKICK_GENERATION_MAX_TOKENS", "48")]).await;
    let asked = mention(&fake, CH1, &alice(), "tell me about your favourite linux distribution").await;
    assert!(fake.wait_typing(CH1, Duration::from_secs(60)).await, "the bot never started the reply");
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    let code = exit_code(&mut daemon, Duration::from_secs(30)).await;
    if code.is_none() {
        sigkill(&mut daemon);
    }
    assert_eq!(code, Some(0), "{}", daemon_stderr(dir.path()));
    assert!(!reply_to(&fake, asked).await.content().is_empty());
}
