//! Running for months: `sidekick status` and `backup` against the running daemon, panics
//! injected into the model and a conversation, and the systemd unit.

use crate::discord::{alice, ask, mention, owner, reply_to, BOT, CH1, GUILD, WAIT};
use crate::fake_discord::FakeDiscord;
use crate::support::{free_port, http_get, sidekick_cli, sigkill, spawn_connected_daemon};
use sidekick::control::{self, Request, Response};
use sidekick::store::FjallStore;
#[allow(unused_imports)]
use sidekick_actors::ports::{FeedbackJournal, MessageLog, ReplyJournal, SettingsStore, StatsStore};
use sidekick_actors::ChannelKey;
use std::path::Path;
use std::time::{Duration, Instant};

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_backup_come_from_the_running_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let out = sidekick_cli(dir.path(), &["status"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).starts_with("sidekick is not running"), "{}", text(&out));

    let fake = FakeDiscord::start(BOT, owner(), GUILD, &[CH1]).await;
    let mut daemon = spawn_connected_daemon(dir.path(), &fake, &[]).await;
    let id = mention(&fake, CH1, &alice(), "remember the lighthouse").await;
    reply_to(&fake, id).await;
    assert!(ask(&fake, CH1, &alice(), "!feedback 4 nice").await.starts_with("Thanks!"));

    let out = sidekick_cli(dir.path(), &["status"]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(shown.starts_with("sidekick 0.1.0 is running (pid "), "{shown}");
    assert!(shown.contains("model:      SmolLM2-135M-Instruct.Q4_1.gguf") && shown.contains("adapter:    none (base model)"), "{shown}");
    assert!(shown.contains("last reply: ") && !shown.contains("last reply: none"), "{shown}");
    assert!(shown.contains("queue:      0 waiting, 0 replying"), "{shown}");

    // A backup taken while the daemon runs opens as a store with what was said.
    let backup = dir.path().join("backup-1");
    let out = sidekick_cli(dir.path(), &["backup", backup.to_str().unwrap()]);
    assert!(out.status.success() && text(&out).starts_with("backup written to "), "{}", text(&out));
    let out = sidekick_cli(dir.path(), &["backup", backup.to_str().unwrap()]);
    assert!(!out.status.success() && text(&out).contains("already exists and is not empty"), "{}", text(&out));
    sigkill(&mut daemon);
    let copy = FjallStore::open(&backup.join("store")).expect("the backup opens");
    let history = copy.recent_history(&ChannelKey::guild(GUILD, CH1), 50).unwrap();
    assert!(history.iter().any(|m| m.content == "remember the lighthouse"), "{history:?}");
    assert_eq!(copy.feedback_events().unwrap().len(), 1);
    assert!(backup.join("backup.json").is_file());

    // With the daemon gone, backup copies the store itself.
    let out = sidekick_cli(dir.path(), &["backup", dir.path().join("backup-2").to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(FjallStore::open(&dir.path().join("backup-2/store")).unwrap().feedback_events().unwrap().len(), 1);
}

/// The value of `series` in the daemon's /metrics, if present.
fn metric(addr: &str, series: &str) -> Option<f64> {
    http_get(addr, "/metrics").lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

async fn wait_metric(addr: &str, series: &str, value: f64) {
    let deadline = Instant::now() + WAIT;
    while metric(addr, series) != Some(value) {
        assert!(Instant::now() < deadline, "{series} never reached {value} (now {:?})", metric(addr, series));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn inject(dir: &Path, actor: &str) {
    let socket = dir.join("store/sidekick.sock");
    match control::ask(&socket, &Request::Panic { actor: actor.into() }).await.unwrap() {
        Response::Done => {}
        other => panic!("fault injection refused: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panics_in_the_model_and_a_conversation_are_restarted_counted_and_answered() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDiscord::start(BOT, owner(), GUILD, &[CH1]).await;
    let addr = format!("127.0.0.1:{}", free_port());
    let mut daemon =
        spawn_connected_daemon(dir.path(), &fake, &[("SIDEKICK_METRICS_LISTEN", &addr), ("SIDEKICK_FAULT_INJECTION", "1")]).await;
    let id = mention(&fake, CH1, &alice(), "hello").await;
    reply_to(&fake, id).await;
    assert_eq!(metric(&addr, "sidekick_actor_restarts_total{actor=\"model\"}"), Some(0.0));

    inject(dir.path(), "model").await;
    wait_metric(&addr, "sidekick_actor_restarts_total{actor=\"model\"}", 1.0).await;
    let id = mention(&fake, CH1, &alice(), "are you still there?").await;
    assert!(!reply_to(&fake, id).await.content().starts_with("⚠️"), "the next mention is answered by the reloaded model");

    inject(dir.path(), &format!("channel:discord:{CH1}")).await;
    wait_metric(&addr, "sidekick_actor_restarts_total{actor=\"conversation\"}", 1.0).await;
    let id = mention(&fake, CH1, &alice(), "and now?").await;
    assert!(!reply_to(&fake, id).await.content().starts_with("⚠️"));
    assert_eq!(metric(&addr, "sidekick_errors_total{kind=\"actor_failed\"}"), Some(2.0));
    let status = text(&sidekick_cli(dir.path(), &["status"]));
    assert!(status.contains("restarts:   2"), "{status}");
    sigkill(&mut daemon);
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    // verify needs the binary to exist and exits 0 on mere warnings, so an existing binary
    // stands in for ours and any output fails the test.
    let unit = std::fs::read_to_string(crate::support::repo_root().join("packaging/sidekick.service")).unwrap();
    assert!(unit.contains("Restart=on-failure") && unit.contains("KillSignal=SIGTERM"));
    let dir = tempfile::tempdir().unwrap();
    let copy: String = unit
        .lines()
        .map(|l| if l.starts_with("ExecStart=") { "ExecStart=/bin/true run".to_string() } else { l.to_string() })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.path().join("sidekick.service"), copy).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .args(["verify", dir.path().join("sidekick.service").to_str().unwrap()])
        .output()
        .expect("systemd-analyze is installed (scripts/ci_tools.sh installs it)");
    assert!(out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(), "{}", text(&out));
}
