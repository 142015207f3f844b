//! Running for months: `sidekick status` and `backup` against the running daemon, panics
//! injected into the model and a conversation, and the systemd unit.

use crate::discord::{alice, ask, mention, owner, reply_to, BOT, CH1, GUILD, WAIT};
use crate::fake_discord::FakeDiscord;
use crate::support::{free_port, http_get, sidekick, sidekick_cli, sigkill, spawn_connected_daemon};
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

    // Someone the socket refuses hears that, not "not running".
    let out = status_refused(dir.path());
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(text(&out).contains("permission denied on ") && text(&out).contains("sidekick.sock"), "{}", text(&out));

    // The socket bounds what it reads: too much is refused, too slow is answered and closed.
    let socket = dir.path().join("store/sidekick.sock");
    let answer = raw_request(&socket, vec![b'x'; (64 << 20) + 10]).await;
    assert!(answer.contains("request too large (over 64 MiB)"), "{answer}");
    let answer = raw_request(&socket, Vec::new()).await;
    assert!(answer.contains("no request within 10 s"), "{answer}");
    assert!(sidekick_cli(dir.path(), &["status"]).status.success(), "and it still answers");

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
/// `sidekick status` by a user the control socket refuses: root passes any file mode, so as
/// root the client runs as `nobody` (from a copy of the binary it can reach); otherwise the
/// socket's mode is taken away meanwhile.
fn status_refused(dir: &Path) -> std::process::Output {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mode = |path: &Path, mode: u32| std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    let mut template = sidekick(dir);
    if std::fs::metadata("/proc/self").unwrap().uid() != 0 {
        let socket = dir.join("store/sidekick.sock");
        mode(&socket, 0o000);
        let out = template.args(["status"]).output().unwrap();
        mode(&socket, 0o600);
        return out;
    }
    let exe = dir.join("sidekick-copy");
    std::fs::copy(env!("CARGO_BIN_EXE_sidekick"), &exe).unwrap();
    mode(dir, 0o755);
    let mut as_nobody = std::process::Command::new("setpriv");
    as_nobody.args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(&exe).arg("status").current_dir(dir);
    for (key, value) in template.get_envs() {
        match value {
            Some(value) => as_nobody.env(key, value),
            None => as_nobody.env_remove(key),
        };
    }
    as_nobody.output().expect("setpriv runs")
}

/// Sends `bytes` on the control socket as they are (in a task of their own: the daemon may
/// stop reading) and returns what comes back before the daemon hangs up.
async fn raw_request(socket: &Path, bytes: Vec<u8>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut read, mut write) = tokio::net::UnixStream::connect(socket).await.unwrap().into_split();
    let writer = tokio::spawn(async move {
        let _ = write.write_all(&bytes).await;
        write // kept open: the daemon sees no end of the request
    });
    let mut answer = String::new();
    let read = tokio::time::timeout(Duration::from_secs(60), read.read_to_string(&mut answer)).await;
    assert!(read.is_ok(), "the daemon never answered or hung up");
    drop(writer.await);
    answer
}

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
