//! `!fetch` and `!train`: the daemon starts `sidekick fetch` (and `dataset`, `train`) as
//! processes of their own (the daemon never scrapes or trains in its own process) and posts
//! the summary they print when they end.

use sidekick_actors::liveness::GatewayHealth;
use sidekick_actors::ports::HistoryJobs;
use sidekick_actors::sync::LockExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::AsyncBufReadExt;
use tokio::sync::oneshot;

pub struct FetchJobs {
    exe: PathBuf,
    config_file: PathBuf,
    running: Arc<AtomicBool>,
    /// `!train` fetches first when the bot has a token.
    fetch_first: bool,
    training: Arc<Mutex<TrainRun>>,
    /// Says whether Discord sends message text (without the intent, a fetch reads none).
    gateway: GatewayHealth,
}

/// Why history cannot be read without the Message Content intent.
const NO_TEXT: &str = "Discord doesn't send me the text of messages without the Message Content intent, so there is no history to \
     learn from. Turn it on in the developer portal (Bot → Privileged Gateway Intents) and restart me.";

/// The training run behind `!train`: what it is doing, or how the last one ended.
#[derive(Default)]
struct TrainRun {
    running: bool,
    doing: String,
    ended: Option<String>,
}

impl FetchJobs {
    /// Jobs run by this executable, if it is the `sidekick` binary (a test harness that runs
    /// the daemon in-process is not, and must not start itself).
    pub fn for_this_binary(config_file: PathBuf, fetch_first: bool, gateway: GatewayHealth) -> Option<FetchJobs> {
        let exe = std::env::current_exe().ok()?;
        (exe.file_name()? == "sidekick").then(|| FetchJobs {
            exe,
            config_file,
            running: Arc::default(),
            fetch_first,
            training: Arc::default(),
            gateway,
        })
    }
}

/// `sidekick <args>` with the daemon's config file (with none, built-in defaults: the child
/// finds none either), output piped.
fn sidekick(exe: &PathBuf, config_file: &PathBuf, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(exe);
    if config_file.is_file() {
        command.arg("--config").arg(config_file);
    }
    command
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Runs `command` to its end: its stdout's last line, or why it failed.
async fn finish(mut command: tokio::process::Command, what: &str) -> Result<String, String> {
    match command.output().await {
        Ok(out) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).trim().to_string()),
        Ok(out) => Err(format!("{what} failed: {}", last_line(&out.stderr).unwrap_or_else(|| out.status.to_string()))),
        Err(e) => Err(format!("{what} could not start: {e}")),
    }
}

/// Fetch (maybe), dataset, train: what `!train` posts when it ends.
async fn train_run(exe: PathBuf, config_file: PathBuf, fetch_first: bool, run: Arc<Mutex<TrainRun>>) -> String {
    let doing = |what: String| run.lock_or_recover().doing = what;
    if fetch_first {
        doing("reading new history (`sidekick fetch`)".into());
        if let Err(why) = finish(sidekick(&exe, &config_file, &["fetch", "--quiet"]), "The fetch").await {
            return format!("Training stopped: {why}");
        }
    }
    doing("building the dataset (`sidekick dataset`)".into());
    if let Err(why) = finish(sidekick(&exe, &config_file, &["dataset"]), "Building the dataset").await {
        return format!("Training stopped: {why}");
    }
    doing("training: loading the model".into());
    // One thread: the daemon keeps answering on the other cores.
    let mut command = sidekick(&exe, &config_file, &["train"]);
    command.env("SIDEKICK_TRAIN_THREADS", "1");
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return format!("Training could not start: {e}"),
    };
    let mut errors = Vec::new();
    if let Some(stderr) = child.stderr.take() {
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            // Progress lines ("step 5/50: loss 3.1, 70 tokens/s, 800 s left", "eval: …") for
            // `!train status`.
            if line.starts_with("step ") || line.starts_with("resuming") {
                doing(format!("training, {line}"));
            } else if let Some(eval) = line.strip_prefix("eval: ") {
                doing(format!("evaluating, {eval}"));
            } else if !line.trim().is_empty() {
                errors.push(line);
            }
        }
    }
    match child.wait_with_output().await {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        Ok(out) => format!(
            "Training failed: {}",
            errors.last().map(|l| l.trim_start_matches("sidekick: ").to_string()).unwrap_or_else(|| out.status.to_string())
        ),
        Err(e) => format!("Training failed: {e}"),
    }
}

impl HistoryJobs for FetchJobs {
    fn start_fetch(&self) -> Result<oneshot::Receiver<String>, String> {
        if self.gateway.without_message_content() {
            return Err(NO_TEXT.into());
        }
        if self.running.swap(true, Ordering::AcqRel) {
            return Err("A fetch is already running; its counts will be posted where it was started.".into());
        }
        let started = sidekick(&self.exe, &self.config_file, &["fetch", "--quiet"]).spawn();
        let child = match started {
            Ok(child) => child,
            Err(e) => {
                self.running.store(false, Ordering::Release);
                return Err(format!("I couldn't start `sidekick fetch`: {e}"));
            }
        };
        let (done, heard) = oneshot::channel();
        let running = self.running.clone();
        tokio::spawn(async move {
            let line = match child.wait_with_output().await {
                Ok(out) if out.status.success() => last_line(&out.stdout).unwrap_or_else(|| "The fetch ended.".into()),
                Ok(out) => format!("The fetch failed: {}", last_line(&out.stderr).unwrap_or_else(|| out.status.to_string())),
                Err(e) => format!("The fetch failed: {e}"),
            };
            running.store(false, Ordering::Release);
            let _ = done.send(line);
        });
        Ok(heard)
    }

    fn start_train(&self) -> Result<oneshot::Receiver<String>, String> {
        if self.fetch_first && self.gateway.without_message_content() {
            return Err(NO_TEXT.into());
        }
        self.train_started()?;
        let (done, heard) = oneshot::channel();
        let run = self.training.clone();
        let job = train_run(self.exe.clone(), self.config_file.clone(), self.fetch_first, run.clone());
        tokio::spawn(async move {
            let line = job.await;
            {
                let mut run = run.lock_or_recover();
                (run.running, run.ended) = (false, Some(line.clone()));
            }
            let _ = done.send(line);
        });
        Ok(heard)
    }

    fn train_status(&self) -> String {
        let run = self.training.lock_or_recover();
        match (&run.running, &run.ended) {
            (true, _) => format!("Training is running: {}.", run.doing),
            (false, Some(ended)) => format!("Not training now. The last run: {ended}"),
            (false, None) => "Not training now, and not since I started. `!train` starts it.".into(),
        }
    }
}

impl FetchJobs {
    fn train_started(&self) -> Result<(), String> {
        let mut run = self.training.lock_or_recover();
        if run.running {
            return Err(format!("Training is already running: {}. `!train status` says how far it got.", run.doing));
        }
        (run.running, run.doing) = (true, "starting".into());
        Ok(())
    }
}

fn last_line(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let line = text.lines().rev().find(|l| !l.trim().is_empty())?;
    Some(line.trim().trim_start_matches("sidekick: ").to_string())
}
