//! The `sidekick` binary as a user runs it.

use crate::support::{http_get, sidekick};
use sidekick::store::FjallStore;
#[allow(unused_imports)]
use sidekick_actors::ports::{FeedbackJournal, MessageLog, ReplyJournal, SettingsStore, StatsStore};
use sidekick_actors::ChannelKey;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn run_with_input(mut cmd: Command, input: &str) -> Output {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn piped_chat_answers_ping_and_a_message_then_exits() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = sidekick(dir.path());
    cmd.args(["chat"]).env("SIDEKICK_GENERATION_MAX_TOKENS", "24");
    let out = run_with_input(cmd, "!ping\nhello\n");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "exit {:?}, stderr: {}", out.status, text(&out.stderr));
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("Pong!"));
    let reply: String = lines.collect::<Vec<_>>().join("\n");
    assert!(!reply.trim().is_empty(), "no model reply in {stdout:?}");
    // What was said is in the store afterwards.
    let store = FjallStore::open(&dir.path().join("store")).unwrap();
    let history = store.recent_history(&ChannelKey::Console, 10).unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].content, "hello");
    assert_eq!(history[1].content, reply.trim());
}

#[test]
fn a_dotenv_beside_the_config_file_is_read_before_logging_starts() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf");
    std::fs::create_dir(&conf).unwrap();
    std::fs::write(conf.join("sidekick.toml"), "").unwrap();
    let chat = || {
        let mut cmd = sidekick(dir.path());
        cmd.env_remove("SIDEKICK_LOG").args(["--config", "conf/sidekick.toml", "chat"]);
        run_with_input(cmd, "!ping\n")
    };
    let quiet = chat();
    assert!(quiet.status.success(), "{}", text(&quiet.stderr));
    assert!(!text(&quiet.stderr).contains("model loaded"), "warnings only by default: {}", text(&quiet.stderr));
    std::fs::write(conf.join(".env"), "SIDEKICK_LOG=info\n").unwrap();
    let told = chat();
    assert_eq!(text(&told.stdout).trim(), "Pong!");
    assert!(text(&told.stderr).contains("model loaded"), "SIDEKICK_LOG from conf/.env: {}", text(&told.stderr));
}

#[test]
fn sigterm_during_a_reply_exits_zero_and_the_store_opens() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = sidekick(dir.path());
    cmd.args(["chat"])
        .env("SIDEKICK_GENERATION_MAX_TOKENS", "1000")
        .env("SIDEKICK_SHUTDOWN_GRACE_SECONDS", "0.5")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"Write a very long story about a dragon who learns to sing.\n").unwrap();
    // Keep stdin open: the chat must not end by itself.
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 1];
    stdout.read_exact(&mut first).expect("the reply started");
    let signalled = Instant::now();
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(signalled.elapsed() < Duration::from_secs(30), "did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(stdin);
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(status.success(), "exit {status:?}, stderr: {stderr}");

    let store = FjallStore::open(&dir.path().join("store")).unwrap();
    let history = store.recent_history(&ChannelKey::Console, 10).unwrap();
    assert_eq!(history[0].content, "Write a very long story about a dragon who learns to sing.");
    assert_eq!(history.len(), 2, "the partial reply was kept");
    assert!(!history[1].content.is_empty());
}

fn refused(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> String {
    let mut cmd = sidekick(dir);
    cmd.args(args).envs(envs.iter().copied());
    let out = run_with_input(cmd, "");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?} {envs:?}: stderr {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    stderr
}

#[test]
fn bad_configuration_is_refused_with_exit_code_2_and_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let err = refused(dir.path(), &["chat"], &[("SIDEKICK_GENERATION_TEMPERATURE", "7")]);
    assert!(err.contains("`temperature` must be between 0 and 2, got 7"), "{err}");
    let err = refused(dir.path(), &["chat"], &[("SIDEKICK_MODEL_THREADS", "0")]);
    assert!(err.contains("model.threads must be between 1 and 256"), "{err}");
    let err = refused(dir.path(), &["chat"], &[("SIDEKICK_METRICS_LISTEN", "everywhere")]);
    assert!(err.contains("metrics.listen"), "{err}");

    std::fs::write(dir.path().join("bad.toml"), "[generation]\ntop_k = 0\n").unwrap();
    let err = refused(dir.path(), &["--config", "bad.toml", "chat"], &[]);
    assert!(err.contains("`top_k` must be between 1 and 200, got 0"), "{err}");
    let err = refused(dir.path(), &["--config", "missing.toml", "chat"], &[]);
    assert!(err.contains("cannot read config file missing.toml"), "{err}");
    let err = refused(dir.path(), &["chat"], &[("SIDEKICK_RL_RATING_WEIGHT", "0"), ("SIDEKICK_RL_SENTIMENT_WEIGHT", "0")]);
    assert!(err.contains("rl.rating_weight and rl.sentiment_weight cannot both be 0"), "{err}");
    std::fs::write(dir.path().join("emoji.toml"), "[rl.reactions]\n\"👍\" = 3.0\n").unwrap();
    let err = refused(dir.path(), &["--config", "emoji.toml", "chat"], &[]);
    assert!(err.contains("rl.reactions: the reward of 👍 must be between -1 and 1, got 3"), "{err}");
}

#[test]
fn a_missing_model_file_names_the_path_and_the_setup_command() {
    let dir = tempfile::tempdir().unwrap();
    let err = refused(dir.path(), &["chat"], &[("SIDEKICK_MODEL_PATH", "/no/such/model.gguf")]);
    assert!(err.contains("/no/such/model.gguf") && err.contains("./run.sh setup"), "{err}");
    std::fs::write(dir.path().join("junk.gguf"), b"not a model").unwrap();
    let mut cmd = sidekick(dir.path());
    cmd.args(["chat"]).env("SIDEKICK_MODEL_PATH", dir.path().join("junk.gguf"));
    let out = run_with_input(cmd, "hello\n");
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("junk.gguf"), "{}", text(&out.stderr));
}

#[test]
fn run_without_a_token_explains_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let err = refused(dir.path(), &["run"], &[]);
    assert!(err.contains("DISCORD_TOKEN is not set"), "{err}");
    assert!(!err.contains("panicked"));
}

#[test]
fn metrics_are_served_while_chatting() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let mut cmd = sidekick(dir.path());
    cmd.args(["chat", "--metrics"])
        .env("SIDEKICK_METRICS_LISTEN", &addr)
        .env("SIDEKICK_GENERATION_MAX_TOKENS", "12")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"hello\n!ping\n").unwrap();
    // Wait for the reply to the ping, which comes after the chat reply.
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while std::io::BufRead::read_line(&mut stdout, &mut line).unwrap() > 0 && !line.contains("Pong!") {}
    let metrics = http_get(&addr, "/metrics");
    drop(stdin);
    assert!(child.wait().unwrap().success());
    for name in [
        "sidekick_messages_seen_total 1",
        "sidekick_replies_sent_total 1",
        "sidekick_reply_latency_seconds_bucket{le=\"0.05\"}",
        "sidekick_time_to_first_token_seconds_count 1",
        "sidekick_tokens_generated_total",
        "sidekick_prompt_tokens_total",
        "sidekick_prompt_tokens_reused_total",
        "sidekick_queue_depth",
        "sidekick_inflight_sequences",
        "sidekick_model_load_seconds",
        "sidekick_uptime_seconds",
    ] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }
}
