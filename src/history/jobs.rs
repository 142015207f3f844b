//! `!fetch`: the daemon starts `sidekick fetch` as a process of its own (the daemon never
//! scrapes) and posts the one-line summary it prints when it ends.

use sidekick_actors::ports::HistoryJobs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::oneshot;

pub struct FetchJobs {
    exe: PathBuf,
    config_file: PathBuf,
    running: Arc<AtomicBool>,
}

impl FetchJobs {
    /// Fetches run by this executable, if it is the `sidekick` binary (a test harness that
    /// runs the daemon in-process is not, and must not start itself).
    pub fn for_this_binary(config_file: PathBuf) -> Option<FetchJobs> {
        let exe = std::env::current_exe().ok()?;
        (exe.file_name()? == "sidekick").then(|| FetchJobs { exe, config_file, running: Arc::default() })
    }
}

impl HistoryJobs for FetchJobs {
    fn start_fetch(&self) -> Result<oneshot::Receiver<String>, String> {
        if self.running.swap(true, Ordering::AcqRel) {
            return Err("A fetch is already running; its counts will be posted where it was started.".into());
        }
        let started = {
            let mut command = tokio::process::Command::new(&self.exe);
            // The daemon's file; with none (built-in defaults) the child finds none either.
            if self.config_file.is_file() {
                command.arg("--config").arg(&self.config_file);
            }
            command
                .args(["fetch", "--quiet"])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
        };
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
}

fn last_line(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let line = text.lines().rev().find(|l| !l.trim().is_empty())?;
    Some(line.trim().trim_start_matches("sidekick: ").to_string())
}
