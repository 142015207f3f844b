//! The daemon's control socket (`<storage.path>/sidekick.sock`): `sidekick status` and
//! `sidekick backup` ask the running daemon through it, one JSON line each way; so does the
//! web console (`sidekick console`) for its page and its settings.

use crate::config::Config;
use crate::store::FjallStore;
use ractor::ActorRef;
use serde::{Deserialize, Serialize};
use sidekick_actors::commands::Access;
use sidekick_actors::liveness::GatewayHealth;
use sidekick_actors::{ChannelKey, Inbound, ReplyEvent, RootMsg};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// The largest request read: a history batch (2,000 messages of up to 4,000 characters, as
/// JSON) fits many times over; anything larger is refused, not buffered.
pub const MAX_REQUEST_BYTES: u64 = 64 << 20;
/// How long a client may take to send its request (a local socket needs milliseconds).
pub const REQUEST_TIME: Duration = Duration::from_secs(10);

pub fn socket_path(config: &Config) -> PathBuf {
    config.storage.path.join("sidekick.sock")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Request {
    Status,
    Backup {
        dir: PathBuf,
        /// The nearest existing folder of `dir` as the asker sees it, so a daemon that sees
        /// another one there (systemd's PrivateTmp) refuses instead of writing out of sight.
        #[serde(default)]
        seen: Option<crate::backup::SeenFolder>,
    },
    /// Fault injection for the supervision tests; refused unless the daemon was started
    /// with `SIDEKICK_FAULT_INJECTION=1`.
    Panic {
        actor: String,
    },
    /// `sidekick fetch`, `import` and `dataset` while the daemon holds the store.
    History(crate::history::HistoryRequest),
    /// A `!` command from the web console (`!settemp 0.8`), run as the owner's, through the
    /// same command table and store writes as on Discord; the answer is its reply.
    Command {
        text: String,
    },
    /// What the web console shows: status, settings, the last day and week.
    Dashboard,
}

/// What `sidekick status` shows.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub pid: u32,
    pub version: String,
    pub uptime_seconds: u64,
    pub model: Option<String>,
    pub adapter: Option<String>,
    pub last_reply_seconds_ago: Option<u64>,
    pub waiting: usize,
    pub replying: usize,
    pub channels: usize,
    pub restarts: u64,
    pub retrieval_vectors: Option<usize>,
    pub retrieval_degraded: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Status(Status),
    Backup(crate::backup::BackupReport),
    Done,
    History(crate::history::HistoryResponse),
    /// A command's answer.
    Answer(String),
    Dashboard(Box<crate::dashboard::Dashboard>),
    Error(String),
}

pub struct ControlServer {
    task: tokio::task::JoinHandle<()>,
    path: PathBuf,
}

impl ControlServer {
    /// Listens on the control socket. A stale socket file (from a killed daemon) is replaced;
    /// a live one means another daemon uses this store.
    pub async fn start(
        config: &Config,
        root: ActorRef<RootMsg>,
        store: Arc<FjallStore>,
        gateway: GatewayHealth,
    ) -> anyhow::Result<ControlServer> {
        let path = socket_path(config);
        if UnixStream::connect(&path).await.is_ok() {
            anyhow::bail!(
                "another sidekick is already running on {} (its control socket {} answers)",
                config.storage.path.display(),
                path.display()
            );
        }
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).map_err(|e| anyhow::anyhow!("cannot open the control socket {}: {e}", path.display()))?;
        // Only the daemon's own user may ask for status or a backup.
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        let config = Arc::new(config.clone());
        let faults = std::env::var("SIDEKICK_FAULT_INJECTION").is_ok_and(|v| v == "1");
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let daemon = Served { root: root.clone(), store: store.clone(), config: config.clone(), gateway: gateway.clone(), faults };
                tokio::spawn(async move {
                    if let Err(e) = serve(stream, &daemon).await {
                        tracing::debug!(error = %e, "control connection ended");
                    }
                });
            }
        });
        Ok(ControlServer { task, path })
    }

    pub fn stop(self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What a control request is answered from.
struct Served {
    root: ActorRef<RootMsg>,
    store: Arc<FjallStore>,
    config: Arc<Config>,
    gateway: GatewayHealth,
    faults: bool,
}

async fn serve(stream: UnixStream, daemon: &Served) -> anyhow::Result<()> {
    let Served { root, store, config, faults, .. } = daemon;
    let faults = *faults;
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut bounded = BufReader::new(read).take(MAX_REQUEST_BYTES + 1);
    let Ok(got) = tokio::time::timeout(REQUEST_TIME, bounded.read_line(&mut line)).await else {
        let why = format!("no request within {} s", REQUEST_TIME.as_secs());
        return reply(&mut write, &Response::Error(why)).await;
    };
    got?;
    if line.len() as u64 > MAX_REQUEST_BYTES {
        let why = format!("request too large (over {} MiB)", MAX_REQUEST_BYTES >> 20);
        return reply(&mut write, &Response::Error(why)).await;
    }
    let response = match serde_json::from_str::<Request>(&line) {
        Ok(Request::Status) => match status(root).await {
            Some(s) => Response::Status(s),
            None => Response::Error("the actor tree did not answer".into()),
        },
        Ok(Request::Backup { dir, seen }) => {
            let (config, store) = (config.clone(), store.clone());
            match seen.as_ref().and_then(|seen| seen.differs_here(&dir, &config)) {
                Some(refusal) => Response::Error(refusal.to_string()),
                None => {
                    let _ = root.call(RootMsg::Checkpoint, Some(Duration::from_secs(180))).await;
                    match tokio::task::spawn_blocking(move || crate::backup::take(&config, &store, &dir)).await? {
                        Ok(report) => Response::Backup(report),
                        Err(e) => Response::Error(e.to_string()),
                    }
                }
            }
        }
        Ok(Request::Panic { actor }) => inject_panic(root, &actor, faults)?,
        Ok(Request::History(request)) => {
            let store = store.clone();
            match tokio::task::spawn_blocking(move || crate::history::serve(&store, request)).await? {
                Ok(answer) => Response::History(answer),
                Err(e) => Response::Error(e),
            }
        }
        Ok(Request::Command { text }) => command(root, &config.chat.prefix, &text).await,
        Ok(Request::Dashboard) => match status(root).await {
            Some(s) => match crate::dashboard::gather(s, config, store, &daemon.gateway, now_ms()) {
                Ok(dashboard) => Response::Dashboard(Box::new(dashboard)),
                Err(e) => Response::Error(format!("cannot read the store: {e}")),
            },
            None => Response::Error("the actor tree did not answer".into()),
        },
        Err(e) => Response::Error(format!("bad request: {e}")),
    };
    reply(&mut write, &response).await
}

/// Makes an actor panic, for the supervision tests: only in a build with the
/// `fault-injection` feature, started with `SIDEKICK_FAULT_INJECTION=1`.
#[cfg(feature = "fault-injection")]
fn inject_panic(root: &ActorRef<RootMsg>, actor: &str, enabled: bool) -> anyhow::Result<Response> {
    if !enabled {
        return Ok(Response::Error("fault injection is off".into()));
    }
    use sidekick_actors::supervisor::Child;
    if actor == "engine-stall" {
        crate::llama::stall_engine();
        return Ok(Response::Done);
    }
    let child = match actor.strip_prefix("channel:") {
        Some(channel) => match channel.parse() {
            Ok(channel) => Child::Channel(channel),
            Err(e) => return Ok(Response::Error(e.to_string())),
        },
        None => match actor {
            "model" => Child::Model,
            "retrieval" => Child::Retrieval,
            "feedback" => Child::Feedback,
            "watchdog" => Child::Watchdog,
            _ => return Ok(Response::Error(format!("no actor {actor:?}"))),
        },
    };
    root.send_message(RootMsg::InjectPanic(child))?;
    Ok(Response::Done)
}

#[cfg(not(feature = "fault-injection"))]
fn inject_panic(_: &ActorRef<RootMsg>, _: &str, _: bool) -> anyhow::Result<Response> {
    Ok(Response::Error("fault injection is off (this build has no fault-injection feature)".into()))
}

/// How long a console command may take (`!deny … purge` deletes and rewrites the index).
const COMMAND_TIME: Duration = Duration::from_secs(120);

/// Runs `text` as the owner's command on the console channel; chat is refused, since a
/// reply has nowhere to go.
async fn command(root: &ActorRef<RootMsg>, prefix: &str, text: &str) -> Response {
    let text = text.trim();
    if !text.starts_with(prefix) {
        return Response::Error(format!("only commands are taken here (they start with `{prefix}`)"));
    }
    let (reply, mut events) = tokio::sync::mpsc::unbounded_channel();
    let inbound = Inbound::addressed("console", text, Access::Owner, reply);
    if root.send_message(RootMsg::Route { channel: ChannelKey::Console, inbound }).is_err() {
        return Response::Error("the actor tree is not running".into());
    }
    let answered = tokio::time::timeout(COMMAND_TIME, async {
        while let Some(event) = events.recv().await {
            match event {
                ReplyEvent::Notice(text) => return Response::Answer(text),
                ReplyEvent::Failed(why) => return Response::Error(why),
                _ => {}
            }
        }
        Response::Error("the command got no answer".into())
    });
    answered.await.unwrap_or_else(|_| Response::Error(format!("no answer within {} s", COMMAND_TIME.as_secs())))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

async fn reply(write: &mut tokio::net::unix::OwnedWriteHalf, response: &Response) -> anyhow::Result<()> {
    let mut json = serde_json::to_vec(response)?;
    json.push(b'\n');
    write.write_all(&json).await?;
    Ok(())
}

async fn status(root: &ActorRef<RootMsg>) -> Option<Status> {
    let tree = sidekick_actors::tree::status(&root.get_derived(), sidekick_actors::timeouts::TREE_STATUS).await.ok()?;
    let engine = tree.engine.unwrap_or_default();
    Some(Status {
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        uptime_seconds: tree.uptime.as_secs(),
        model: tree.model.map(|m| m.name),
        adapter: tree.adapter.map(|a| format!("v{} ({})", a.version, a.file)),
        last_reply_seconds_ago: tree.last_reply.map(|d| d.as_secs()),
        waiting: engine.waiting,
        replying: engine.in_flight,
        channels: tree.channels,
        restarts: tree.restarts,
        retrieval_vectors: tree.retrieval.as_ref().map(|r| r.vectors),
        retrieval_degraded: tree.retrieval.and_then(|r| r.degraded),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum AskError {
    #[error("sidekick is not running (no daemon answers on {0})")]
    NotRunning(PathBuf),
    #[error("permission denied on {0}: run this as the daemon's user")]
    PermissionDenied(PathBuf),
    #[error("the daemon did not answer: {0}")]
    Io(#[from] std::io::Error),
    #[error("the daemon's answer is unreadable: {0}")]
    Garbled(#[from] serde_json::Error),
}

/// Sends one request to the daemon whose control socket is `path`.
pub async fn ask(path: &Path, request: &Request) -> Result<Response, AskError> {
    let stream = UnixStream::connect(path).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::PermissionDenied => AskError::PermissionDenied(path.to_path_buf()),
        _ => AskError::NotRunning(path.to_path_buf()),
    })?;
    let (read, mut write) = stream.into_split();
    let mut json = serde_json::to_vec(request)?;
    json.push(b'\n');
    write.write_all(&json).await?;
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    Ok(serde_json::from_str(&line)?)
}

/// `sidekick status` as a person reads it.
pub fn show(s: &Status) -> String {
    let ago = |secs: u64| sidekick_actors::human::duration(Duration::from_secs(secs));
    let mut out = format!("sidekick {} is running (pid {}, up {})\n", s.version, s.pid, ago(s.uptime_seconds));
    out.push_str(&format!("model:      {}\n", s.model.as_deref().unwrap_or("not loaded (restarting)")));
    out.push_str(&format!("adapter:    {}\n", s.adapter.as_deref().unwrap_or("none (base model)")));
    out.push_str(&format!("last reply: {}\n", s.last_reply_seconds_ago.map_or("none yet".to_string(), |a| format!("{} ago", ago(a)))));
    out.push_str(&format!("queue:      {} waiting, {} replying, {} channels open\n", s.waiting, s.replying, s.channels));
    out.push_str(&format!("restarts:   {}\n", s.restarts));
    let retrieval = match (&s.retrieval_degraded, s.retrieval_vectors) {
        (Some(why), _) => format!("off ({why})"),
        (None, Some(n)) => format!("{n} messages indexed"),
        (None, None) => "restarting".into(),
    };
    out.push_str(&format!("retrieval:  {retrieval}"));
    out
}
