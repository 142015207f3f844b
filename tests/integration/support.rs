//! Helpers shared by the integration tests: the bundled model, a daemon on a temp store,
//! and a way to say something in a channel and collect the whole answer.

use sidekick::config::Config;
use sidekick::daemon::{Answer, Daemon};
use sidekick_actors::ChannelKey;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The checkout being tested, read at run time: cargo may reuse a binary built in another
/// checkout, where a compile-time path would point.
pub fn repo_root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

/// The bundled model; the tests need it, so its absence is a failure with the fix in it.
pub fn model_path() -> PathBuf {
    let path = repo_root().join(sidekick::config::DEFAULT_MODEL);
    assert!(path.is_file(), "{} is missing: run `./run.sh setup` first", path.display());
    path
}

/// The in-process daemon's logs go to the test's captured output, which the harness prints
/// only for a failing test: a failure under load comes with what the bot was doing.
/// `SIDEKICK_TEST_LOG` overrides the filter.
pub fn capture_logs() {
    let filter = std::env::var("SIDEKICK_TEST_LOG").unwrap_or_else(|_| "info,llama-cpp-2=warn,fjall=warn,lsm_tree=warn".into());
    let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::new(filter)).with_test_writer().try_init();
}

/// A small configuration for tests: the real model, a temp store, no metrics endpoint.
pub fn test_config(dir: &Path) -> Config {
    capture_logs();
    let mut config = Config::default();
    config.model.path = model_path();
    config.model.context_tokens = 2048;
    config.model.parallel = 4;
    config.model.threads = sidekick::config::ModelThreads::Fixed(1);
    config.model.threads_batch = 2;
    config.storage.path = dir.join("store");
    config.metrics.listen = String::new();
    config.shutdown.grace_seconds = 2.0;
    // Retrieval brings other channels of the same server into prompts; the tests that want it
    // turn it on.
    config.retrieval.enabled = false;
    // Training loads a second copy of the model; the learning tests turn it on.
    config.rl.enabled = false;
    config.rl.adapters_dir = dir.join("adapters");
    config
}

/// A test's channel by name: `console` is the terminal (one speaker, so no names in the
/// prompt), any other name a server channel with a made-up id.
pub fn ch(name: &str) -> ChannelKey {
    if let Some(id) = name.strip_prefix("discord:").and_then(|id| id.parse().ok()) {
        return ChannelKey::guild(1, id);
    }
    match name {
        "console" => ChannelKey::Console,
        _ => {
            ChannelKey::guild(1, name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3) >> 1))
        }
    }
}

pub async fn say(daemon: &Daemon, channel: &str, text: &str) -> Answer {
    tokio::time::timeout(Duration::from_secs(120), daemon.ask(ch(channel), "tester", text))
        .await
        .expect("an answer within 2 minutes")
        .expect("the tree is running")
}

pub async fn status(daemon: &Daemon) -> sidekick_actors::TreeStatus {
    sidekick_actors::tree::status(&daemon.root.get_derived(), Duration::from_secs(5)).await.expect("status")
}

/// A free port on 127.0.0.1 (free when asked; good enough for a test).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else { return String::new() };
    let _ = write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let mut body = String::new();
    let _ = stream.read_to_string(&mut body);
    body
}

/// `sidekick run` in `dir` against the fake Discord (owner and admin from the Discord tests),
/// as a process the test can kill. `env` adds or overrides settings.
pub fn spawn_daemon(dir: &Path, fake: &crate::fake_discord::FakeDiscord, env: &[(&str, &str)]) -> std::process::Child {
    daemon_command(dir, fake, env).spawn().expect("the sidekick binary starts")
}

/// The settings of a bot on the fake Discord: its token, address, owner and admin, and no
/// retrieval or learning (a console passes them on to the bot it starts).
pub fn with_fake_discord<'a>(cmd: &'a mut std::process::Command, fake: &crate::fake_discord::FakeDiscord) -> &'a mut std::process::Command {
    use crate::discord::{ADMIN, OWNER};
    cmd.env("DISCORD_TOKEN", "fake-token")
        .env("DISCORD_API_BASE", fake.api_base())
        .env("OWNER_ID", OWNER.to_string())
        .env("ADMIN_USERS", ADMIN.to_string())
        .env("SIDEKICK_RETRIEVAL_ENABLED", "false")
        .env("SIDEKICK_RL_ENABLED", "false")
}

/// The command [`spawn_daemon`] runs.
pub fn daemon_command(dir: &Path, fake: &crate::fake_discord::FakeDiscord, env: &[(&str, &str)]) -> std::process::Command {
    let mut cmd = sidekick(dir);
    with_fake_discord(&mut cmd, fake)
        .arg("run")
        .env("SIDEKICK_GENERATION_MAX_TOKENS", "16")
        .stdout(std::process::Stdio::null())
        .stderr(daemon_log(dir));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Where a spawned daemon's stderr goes: `daemon.stderr` in the test's folder, appended to.
pub fn daemon_log(dir: &Path) -> std::fs::File {
    std::fs::OpenOptions::new().create(true).append(true).open(dir.join("daemon.stderr")).unwrap()
}

/// What the daemons spawned in `dir` wrote to stderr.
pub fn daemon_stderr(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("daemon.stderr")).unwrap_or_default()
}

/// Waits up to `limit` for `child` to exit; its exit code.
pub async fn exit_code(child: &mut std::process::Child, limit: Duration) -> Option<i32> {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// [`spawn_daemon`], then waits until the new daemon has its own live gateway session.
pub async fn spawn_connected_daemon(dir: &Path, fake: &crate::fake_discord::FakeDiscord, env: &[(&str, &str)]) -> std::process::Child {
    let before = fake.connections();
    let daemon = spawn_daemon(dir, fake, env);
    assert!(fake.wait_ready_after(before, Duration::from_secs(60)).await, "the daemon did not connect");
    daemon
}

/// The binary in a temp working directory (no sidekick.toml, no .env) with test settings:
/// the bundled model, a store under `dir`, no metrics endpoint, no token.
pub fn sidekick(dir: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sidekick"));
    cmd.current_dir(dir)
        .env_remove("DISCORD_TOKEN")
        .env("SIDEKICK_MODEL_PATH", model_path())
        .env("SIDEKICK_MODEL_CONTEXT_TOKENS", "2048")
        .env("SIDEKICK_MODEL_PARALLEL", "2")
        .env("SIDEKICK_STORAGE_PATH", dir.join("store"))
        .env("SIDEKICK_METRICS_LISTEN", "");
    cmd
}

/// `sidekick <args>` on the store of `dir` (for `status`, `backup`), run to the end.
pub fn sidekick_cli(dir: &Path, args: &[&str]) -> std::process::Output {
    sidekick(dir).args(args).output().expect("the sidekick binary runs")
}

pub fn sigkill(child: &mut std::process::Child) {
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
}
