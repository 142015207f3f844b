//! The bot process the console runs (`sidekick run` as its child, the seed's pattern), the
//! systemd service it drives instead when the bot is installed as one ([`SystemdUnit`]), or a
//! bot it finds already running (then it is only watched and signalled, and outlives the
//! console). Its output goes to the [`LogBook`]; a crash is restarted and explained.

use super::logs::LogBook;
use super::service::{self, SystemdUnit};
use crate::control::{self, Request, Response};
use crate::dashboard::Dashboard;
use serde::Serialize;
use sidekick_actors::sync::LockExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// A crash is restarted at most this many times within [`CRASH_WINDOW`]; then the owner is asked.
const MAX_RESTARTS: usize = 3;
const CRASH_WINDOW: Duration = Duration::from_secs(600);
/// systemd calls the service ready, but its control socket has been silent this long.
const SILENT_SOCKET: Duration = Duration::from_secs(10);
/// How often the daemon is asked for its dashboard while it runs.
pub const POLL: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Stopped,
    Starting,
    Running,
    Stopping,
    /// Ended on its own with a failure, and not restarted (it needs the owner).
    Error,
}

/// What the page shows of the process.
#[derive(Debug, Clone, Serialize)]
pub struct BotView {
    pub phase: Phase,
    pub pid: Option<u32>,
    /// Started by this console (stopping the console stops it) or found running.
    pub started_here: bool,
    /// How the last run ended, for a person.
    pub last_exit: Option<String>,
    pub memory_mb: Option<f64>,
    pub dashboard: Option<Dashboard>,
    /// Things the owner should know or do, newest last.
    pub banners: Vec<String>,
    /// The systemd unit driven instead of a child process.
    pub service: Option<String>,
}

/// How to start the bot.
#[derive(Clone)]
pub struct Launch {
    pub program: PathBuf,
    pub config_file: PathBuf,
    pub socket: PathBuf,
    /// The configured model file; a missing one is explained instead of started.
    pub model_missing: Option<String>,
    /// Installed as a systemd service: Start, Stop and Force stop go through `systemctl`.
    pub service: Option<SystemdUnit>,
}

#[derive(Clone)]
pub struct Bot {
    state: Arc<Mutex<State>>,
    pub logs: LogBook,
    launch: Arc<Launch>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopKind {
    Graceful,
    Force,
}

struct State {
    phase: Phase,
    pid: Option<u32>,
    started_here: bool,
    /// Set by Stop and Force stop, so the exit that follows is not a crash.
    stop_asked: Option<StopKind>,
    last_exit: Option<String>,
    dashboard: Option<Dashboard>,
    banners: Vec<String>,
    crashes: Vec<Instant>,
    /// When a Start of the systemd unit was asked (for a control socket that never answers).
    starting_since: Option<Instant>,
}

impl Bot {
    pub fn new(launch: Launch, logs: LogBook) -> Bot {
        let state = State {
            phase: Phase::Stopped,
            pid: None,
            started_here: false,
            stop_asked: None,
            last_exit: None,
            dashboard: None,
            banners: Vec::new(),
            crashes: Vec::new(),
            starting_since: None,
        };
        Bot { state: Arc::new(Mutex::new(state)), logs, launch: Arc::new(launch) }
    }

    pub fn view(&self) -> BotView {
        let state = self.state.lock_or_recover();
        BotView {
            phase: state.phase,
            pid: state.pid,
            started_here: state.started_here,
            last_exit: state.last_exit.clone(),
            memory_mb: state.pid.and_then(resident_mb),
            dashboard: state.dashboard.clone(),
            banners: state.banners.clone(),
            service: self.launch.service.as_ref().map(|u| u.name.clone()),
        }
    }

    pub fn banner(&self, text: impl Into<String>) {
        let mut state = self.state.lock_or_recover();
        self.show_banner(&mut state, text.into());
    }

    /// Logs `text` and shows it once, with the state already locked.
    fn show_banner(&self, state: &mut State, text: String) {
        self.logs.push(&format!("console: {text}"));
        if !state.banners.contains(&text) {
            state.banners.push(text);
        }
    }

    pub fn clear_banners(&self) {
        self.state.lock_or_recover().banners.clear();
    }

    /// Watches the control socket: a bot found running is adopted, one that stopped
    /// answering is noticed. Runs for the console's life.
    pub async fn watch(self) {
        loop {
            let answer = control::ask(&self.launch.socket, &Request::Dashboard).await;
            // systemd's view of a silent bot, asked before the state is locked (D-Bus may be slow).
            let unit = match (&answer, &self.launch.service) {
                (Ok(Response::Dashboard(_)), _) | (_, None) => None,
                (_, Some(unit)) => {
                    let unit = unit.clone();
                    tokio::task::spawn_blocking(move || unit.state()).await.ok().flatten()
                }
            };
            {
                let mut state = self.state.lock_or_recover();
                match answer {
                    Ok(Response::Dashboard(d)) => {
                        if state.phase == Phase::Stopped || state.phase == Phase::Error {
                            // Running without us: started by hand or by systemd.
                            state.started_here = false;
                            self.logs.push(&format!(
                                "console: found sidekick running (pid {}); it keeps running when the console stops",
                                d.status.pid
                            ));
                        }
                        if matches!(state.phase, Phase::Starting | Phase::Stopped | Phase::Error) {
                            state.phase = Phase::Running;
                        }
                        state.pid = Some(d.status.pid);
                        state.dashboard = Some(*d);
                    }
                    Ok(_) | Err(_) if self.launch.service.is_some() => {
                        if let Some(unit) = unit {
                            self.service_not_answering(&mut state, &unit);
                        }
                    }
                    Ok(_) | Err(_) => {
                        // An adopted bot that went away: nobody else will say so.
                        if !state.started_here && matches!(state.phase, Phase::Running | Phase::Stopping) {
                            state.phase = Phase::Stopped;
                            state.pid = None;
                            state.last_exit = Some("stopped (it was not started here, so its exit code is unknown)".into());
                        }
                    }
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Starts `sidekick run`; refused while one runs.
    pub fn start(&self) -> Result<String, String> {
        let mut state = self.state.lock_or_recover();
        if matches!(state.phase, Phase::Starting | Phase::Running | Phase::Stopping) {
            return Err(format!("the bot is already {}", phase_word(state.phase)));
        }
        if let Some(unit) = &self.launch.service {
            // The unit has its own working directory and model path: systemd says if they fail.
            state.phase = Phase::Starting;
            state.started_here = false;
            state.stop_asked = None;
            state.dashboard = None;
            state.starting_since = Some(Instant::now());
            drop(state);
            self.logs.push(&format!("console: systemctl start {}", unit.name));
            if let Err(e) = unit.start() {
                self.state.lock_or_recover().phase = Phase::Stopped;
                return Err(e);
            }
            return Ok(format!("Starting {}: the model is loading.", unit.name));
        }
        if let Some(why) = &self.launch.model_missing {
            drop(state);
            self.banner(why.clone());
            return Err(why.clone());
        }
        let mut command = tokio::process::Command::new(&self.launch.program);
        // A missing default config file means defaults; named, it would be required.
        if self.launch.config_file.exists() {
            command.arg("--config").arg(&self.launch.config_file);
        }
        command
            .arg("run")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: Ctrl-C on the console's terminal is the console's to
            // handle (it stops the bot gracefully), not a signal to the bot as well.
            .process_group(0);
        if std::env::var_os("SIDEKICK_LOG").is_none() {
            command.env("SIDEKICK_LOG", "info,llama-cpp-2=off");
        }
        let mut child = command.spawn().map_err(|e| format!("cannot start {}: {e}", self.launch.program.display()))?;
        let pid = child.id();
        state.phase = Phase::Starting;
        state.pid = pid;
        state.started_here = true;
        state.stop_asked = None;
        state.dashboard = None;
        drop(state);
        self.logs.push(&format!("console: started sidekick run (pid {})", pid.unwrap_or(0)));
        let (out, err) = (child.stdout.take(), child.stderr.take());
        let readers = [out.map(|o| self.read_lines(o)), err.map(|e| self.read_lines(e))];
        let bot = self.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            for reader in readers.into_iter().flatten() {
                let _ = reader.await;
            }
            bot.ended(status);
        });
        Ok("Starting: the model is loading.".into())
    }

    fn read_lines(&self, pipe: impl AsyncRead + Unpin + Send + 'static) -> tokio::task::JoinHandle<()> {
        let logs = self.logs.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(pipe).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                logs.push(&line);
            }
        })
    }

    /// The child ended: a stop asked for, or a crash to restart or explain.
    fn ended(&self, status: std::io::Result<std::process::ExitStatus>) {
        let code = status.as_ref().ok().and_then(|s| s.code());
        let shown = match &status {
            Ok(s) => exit_words(s.code(), std::os::unix::process::ExitStatusExt::signal(s)),
            Err(e) => format!("could not be waited for: {e}"),
        };
        let at = clock_time();
        let mut state = self.state.lock_or_recover();
        state.pid = None;
        state.dashboard = None;
        state.last_exit = Some(format!("{shown} at {at}"));
        let asked = state.stop_asked.take();
        self.logs.push(&format!("console: sidekick {shown}"));
        if asked == Some(StopKind::Force) {
            state.phase = Phase::Stopped;
            drop(state);
            self.banner(force_banner(&shown, &at));
            return;
        }
        if asked.is_some() || code == Some(0) {
            state.phase = Phase::Stopped;
            return;
        }
        let why = self.last_error().map(|e| format!(": {e}")).unwrap_or_default();
        let now = Instant::now();
        state.crashes.retain(|t| now.duration_since(*t) < CRASH_WINDOW);
        // Exit code 2 is a problem only the owner can fix (token, intent, config): restarting
        // would fail the same way.
        let needs_owner = code == Some(i32::from(sidekick_actors::liveness::EXIT_CONFIG));
        if needs_owner || state.crashes.len() >= MAX_RESTARTS {
            state.phase = Phase::Error;
            let what = if needs_owner { "needs you" } else { "keeps crashing" };
            drop(state);
            self.banner(format!("The bot {shown} at {at} and {what}{why}. Fix the cause, then press Start."));
            return;
        }
        state.crashes.push(now);
        state.phase = Phase::Stopped;
        drop(state);
        self.banner(format!("The bot {shown} at {at}{why}; the console restarted it."));
        if let Err(e) = self.start() {
            self.banner(format!("Restarting the bot failed: {e}"));
        }
    }

    /// Service mode, the control socket silent: systemd says what the bot is doing.
    fn service_not_answering(&self, state: &mut State, unit: &service::UnitState) {
        let at = clock_time();
        let why = || self.last_error().map(|e| format!(": {e}")).unwrap_or_default();
        let shown = service::ended(unit);
        let mut banner = None;
        match unit.active.as_str() {
            // Not again for a force stop already shown (SIGKILL leaves the unit failed).
            "failed" if state.phase != Phase::Error && !(state.phase == Phase::Stopped && state.last_exit.is_some()) => {
                state.last_exit = Some(format!("{shown} at {at}"));
                banner = Some(match state.stop_asked.take() {
                    Some(StopKind::Force) => {
                        state.phase = Phase::Stopped;
                        force_banner(&shown, &at)
                    }
                    _ => {
                        state.phase = Phase::Error;
                        format!("The bot {shown} at {at} and systemd gave up on it{}. Fix the cause, then press Start.", why())
                    }
                });
            }
            "inactive" if state.phase != Phase::Stopped => {
                state.phase = Phase::Stopped;
                state.last_exit = Some(format!("{shown} at {at}"));
                if state.stop_asked.take() == Some(StopKind::Force) {
                    banner = Some(force_banner(&shown, &at));
                }
            }
            // Ready for systemd (Type=notify: connected to Discord), yet its control socket is
            // silent: most likely another store folder (a relative storage.path).
            "active" if state.phase == Phase::Starting && state.starting_since.is_some_and(|t| t.elapsed() > SILENT_SOCKET) => {
                state.starting_since = None;
                banner = Some(format!(
                    "systemd says the bot runs, but its control socket {} does not answer, so this page cannot see it. Start the console in the service's WorkingDirectory with its config (cd /opt/sidekick && sudo ./target/release/sidekick --config sidekick.toml console).",
                    self.launch.socket.display()
                ));
            }
            // Between a crash and systemd's restart (`Restart=on-failure`).
            "activating" if state.phase == Phase::Running && state.stop_asked.is_none() => {
                state.phase = Phase::Starting;
                state.last_exit = Some(format!("{shown} at {at}"));
                banner = Some(format!("The bot {shown} at {at}{}; systemd is restarting it.", why()));
            }
            _ => {}
        }
        if !matches!(state.phase, Phase::Running | Phase::Starting | Phase::Stopping) {
            state.pid = None;
            state.dashboard = None;
        }
        if let Some(text) = banner {
            self.show_banner(state, text);
        }
    }

    /// The last error the bot wrote, for the banner.
    fn last_error(&self) -> Option<String> {
        let (lines, _) = self.logs.follow(0);
        lines.iter().rev().take(50).find(|l| l.level == "error").map(|l| l.text.clone())
    }

    /// Graceful stop (SIGTERM): replies in progress finish, then the bot exits 0.
    pub fn stop(&self) -> Result<String, String> {
        self.signal(StopKind::Graceful, "Stopping: replies in progress finish first.")
    }

    /// SIGKILL, for a bot that does not stop.
    pub fn force_stop(&self) -> Result<String, String> {
        self.signal(StopKind::Force, "Killed.")
    }

    fn signal(&self, kind: StopKind, done: &str) -> Result<String, String> {
        let (signal, name) = match kind {
            StopKind::Graceful => (libc::SIGTERM, "SIGTERM"),
            StopKind::Force => (libc::SIGKILL, "SIGKILL"),
        };
        let mut state = self.state.lock_or_recover();
        let live = matches!(state.phase, Phase::Starting | Phase::Running | Phase::Stopping);
        // systemd knows the process even before its control socket answers.
        if !live || (state.pid.is_none() && self.launch.service.is_none()) {
            return Err("the bot is not running".into());
        }
        let pid = state.pid.unwrap_or(0);
        let before = (state.phase, state.stop_asked);
        // Force stop after Stop is still a force stop.
        if state.stop_asked != Some(StopKind::Force) {
            state.stop_asked = Some(kind);
        }
        state.phase = Phase::Stopping;
        drop(state);
        let sent = if let Some(unit) = &self.launch.service {
            self.logs.push(&format!("console: asking systemd to stop {} ({name})", unit.name));
            match kind {
                StopKind::Graceful => unit.stop(),
                StopKind::Force => unit.force_stop(),
            }
        } else {
            self.logs.push(&format!("console: sending {name} to pid {pid}"));
            // SAFETY: kill(2) with a pid this console started or the daemon reported.
            match unsafe { libc::kill(pid as i32, signal) } {
                0 => Ok(()),
                _ => Err(format!("cannot signal pid {pid}: {}", std::io::Error::last_os_error())),
            }
        };
        if let Err(e) = sent {
            // Nothing was stopped: the page must not wait for an exit that will not come.
            let mut state = self.state.lock_or_recover();
            if state.phase == Phase::Stopping {
                (state.phase, state.stop_asked) = before;
            }
            return Err(e);
        }
        Ok(done.into())
    }

    /// Waits until the bot is no longer running (or `limit` passes).
    pub async fn stopped(&self, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if matches!(self.state.lock_or_recover().phase, Phase::Stopped | Phase::Error) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// The systemd unit driven instead of a child, if any.
    pub fn service(&self) -> Option<&SystemdUnit> {
        self.launch.service.as_ref()
    }

    /// Whether this console started the bot running now.
    pub fn started_here(&self) -> bool {
        let state = self.state.lock_or_recover();
        state.started_here && state.pid.is_some()
    }
}

/// How a run ended, for a person: an exit code or the signal that killed it (from the child's
/// exit status, or from systemd's record of the unit's main process).
pub(super) fn exit_words(code: Option<i32>, signal: Option<i32>) -> String {
    match (code, signal) {
        (Some(0), _) => "exited normally (code 0)".to_string(),
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(9)) => "was killed (SIGKILL)".to_string(),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        (None, None) => "ended".to_string(),
    }
}

fn force_banner(shown: &str, at: &str) -> String {
    format!(
        "Force stop: the bot {shown} at {at}; a reply it was writing is lost. Its log above shows what it was doing. Press Start to run it again."
    )
}

pub fn phase_word(phase: Phase) -> &'static str {
    match phase {
        Phase::Stopped => "stopped",
        Phase::Starting => "starting",
        Phase::Running => "running",
        Phase::Stopping => "stopping",
        Phase::Error => "stopped on an error",
    }
}

fn resident_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// HH:MM:SS UTC, for "exited at".
fn clock_time() -> String {
    let secs = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    format!("{:02}:{:02}:{:02} UTC", secs / 3600 % 24, secs / 60 % 60, secs % 60)
}
