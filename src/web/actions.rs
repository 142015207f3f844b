//! The one-click actions: fetch new messages, build the dataset, train, evaluate, back up.
//! Each runs the `sidekick` command of the same name (they work beside a running daemon), one
//! at a time; its output goes to the log and its last line is its progress.

use super::logs::LogBook;
use serde::Serialize;
use sidekick_actors::sync::LockExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Fetch,
    Dataset,
    Train,
    Eval,
    Backup,
}

impl Action {
    pub fn parse(name: &str) -> Option<Action> {
        Some(match name {
            "fetch" => Action::Fetch,
            "dataset" => Action::Dataset,
            "train" => Action::Train,
            "eval" => Action::Eval,
            "backup" => Action::Backup,
            _ => return None,
        })
    }

    pub fn label(self) -> &'static str {
        match self {
            Action::Fetch => "Fetch new messages",
            Action::Dataset => "Build the dataset",
            Action::Train => "Train",
            Action::Eval => "Evaluate",
            Action::Backup => "Back up",
        }
    }

    fn args(self, backups: &std::path::Path) -> Vec<String> {
        match self {
            Action::Fetch => vec!["fetch".into(), "--quiet".into()],
            Action::Dataset => vec!["dataset".into()],
            Action::Train => vec!["train".into()],
            Action::Eval => vec!["eval".into()],
            Action::Backup => {
                let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
                vec!["backup".into(), backups.join(format!("backup-{secs}")).display().to_string()]
            }
        }
    }
}

/// The action running or last run, as the page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    pub action: Action,
    pub label: &'static str,
    pub running: bool,
    pub seconds: u64,
    /// `Some(true)` when it succeeded.
    pub ok: Option<bool>,
    /// Its last line of output: progress while it runs, the result after.
    pub last_line: String,
}

#[derive(Clone)]
pub struct Jobs {
    current: Arc<Mutex<Option<Job>>>,
    program: Arc<PathBuf>,
    config_file: Arc<PathBuf>,
    backups: Arc<PathBuf>,
    logs: LogBook,
}

struct Job {
    action: Action,
    started: Instant,
    ended: Option<Instant>,
    ok: Option<bool>,
    last_line: String,
}

impl Jobs {
    pub fn new(program: PathBuf, config_file: PathBuf, backups: PathBuf, logs: LogBook) -> Jobs {
        Jobs { current: Arc::default(), program: Arc::new(program), config_file: Arc::new(config_file), backups: Arc::new(backups), logs }
    }

    pub fn view(&self) -> Option<JobView> {
        let current = self.current.lock_or_recover();
        current.as_ref().map(|job| JobView {
            action: job.action,
            label: job.action.label(),
            running: job.ended.is_none(),
            seconds: job.ended.unwrap_or_else(Instant::now).duration_since(job.started).as_secs(),
            ok: job.ok,
            last_line: job.last_line.clone(),
        })
    }

    /// Starts `action`, or says politely why not.
    pub fn start(&self, action: Action) -> Result<String, String> {
        let mut current = self.current.lock_or_recover();
        if let Some(job) = current.as_ref().filter(|j| j.ended.is_none()) {
            return Err(format!(
                "{} is still running ({} s so far); try again when it is done",
                job.action.label(),
                job.started.elapsed().as_secs()
            ));
        }
        let mut command = tokio::process::Command::new(self.program.as_path());
        if self.config_file.exists() {
            command.arg("--config").arg(self.config_file.as_path());
        }
        let mut child = command
            .args(action.args(&self.backups))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(false)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", action.label()))?;
        *current = Some(Job { action, started: Instant::now(), ended: None, ok: None, last_line: "started".into() });
        drop(current);
        self.logs.push(&format!("console: {} started", action.label()));
        let readers: Vec<_> =
            [child.stdout.take().map(|p| self.follow(p)), child.stderr.take().map(|p| self.follow(p))].into_iter().flatten().collect();
        let jobs = self.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            for reader in readers {
                let _ = reader.await;
            }
            let ok = status.as_ref().is_ok_and(|s| s.success());
            let mut current = jobs.current.lock_or_recover();
            if let Some(job) = current.as_mut() {
                job.ended = Some(Instant::now());
                job.ok = Some(ok);
                if !ok && job.last_line == "started" {
                    job.last_line = format!("failed ({})", status.map_or_else(|e| e.to_string(), |s| s.to_string()));
                }
            }
            drop(current);
            jobs.logs.push(&format!("console: {} {}", action.label(), if ok { "finished" } else { "failed" }));
        });
        Ok(format!("{} started.", action.label()))
    }

    fn follow(&self, pipe: impl tokio::io::AsyncRead + Unpin + Send + 'static) -> tokio::task::JoinHandle<()> {
        let jobs = self.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(pipe).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let line = jobs.logs.push(&line);
                if !line.text.trim().is_empty() {
                    if let Some(job) = jobs.current.lock_or_recover().as_mut() {
                        job.last_line = line.text;
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{Action, Jobs};
    use crate::web::LogBook;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    /// A stand-in `sidekick` that reports progress, then ends as `$1` says.
    fn program(dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("sidekick");
        let script = "#!/bin/sh\necho \"step 1 of 2\"\nsleep 1\nif [ \"$1\" = eval ]; then echo 'no adapter to evaluate' >&2; exit 1; fi\necho \"$1 done\"\n";
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    async fn finished(jobs: &Jobs) -> super::JobView {
        for _ in 0..100 {
            match jobs.view() {
                Some(view) if !view.running => return view,
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        panic!("the job did not end: {:?}", jobs.view());
    }

    #[tokio::test]
    async fn one_action_at_a_time_with_its_progress_and_result() {
        let dir = tempfile::tempdir().unwrap();
        let jobs = Jobs::new(program(dir.path()), dir.path().join("none.toml"), dir.path().join("backups"), LogBook::default());
        assert_eq!(jobs.start(Action::Dataset), Ok("Build the dataset started.".into()));
        let refused = jobs.start(Action::Train).unwrap_err();
        assert!(refused.starts_with("Build the dataset is still running"), "{refused}");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let running = jobs.view().unwrap();
        assert_eq!((running.running, running.last_line.as_str()), (true, "step 1 of 2"));
        let done = finished(&jobs).await;
        assert_eq!((done.ok, done.last_line.as_str()), (Some(true), "dataset done"));
        // Done, the next may start; a failure keeps its reason as the result.
        jobs.start(Action::Eval).unwrap();
        let failed = finished(&jobs).await;
        assert_eq!((failed.ok, failed.last_line.as_str()), (Some(false), "no adapter to evaluate"));
    }
}
