//! The bot installed as a systemd service (`packaging/sidekick.service`): the console drives
//! the unit with `systemctl` instead of running a child, and shows its journal. systemd
//! keeps the bot running when the console stops, and restarts it after a crash itself.
//!
//! `systemctl` on a system unit needs root (or a polkit rule); its refusal is shown as is.

use super::logs::LogBook;
use std::process::{Command, Stdio};
use tokio::io::AsyncBufReadExt;

/// A systemd unit that is installed (systemd has loaded it).
#[derive(Debug, Clone)]
pub struct SystemdUnit {
    pub name: String,
}

/// What systemd says of the unit now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitState {
    /// `active`, `inactive`, `failed`, `activating`, `deactivating`, …
    pub active: String,
    /// How the last run ended: `success`, `exit-code`, `signal`, `timeout`, `watchdog`, …
    pub result: String,
    /// The main process's exit code (or signal number) of the last run.
    pub status: String,
}

impl SystemdUnit {
    /// The unit, when `systemctl` exists and systemd has it loaded; `None` otherwise (the
    /// console then runs the bot as its child). An empty name turns this off.
    pub fn detect(name: &str) -> Option<SystemdUnit> {
        if name.is_empty() {
            return None;
        }
        let out = Command::new("systemctl").args(["show", "--property=LoadState", "--value", name]).stderr(Stdio::null()).output().ok()?;
        let loaded = out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "loaded";
        loaded.then(|| SystemdUnit { name: name.to_string() })
    }

    /// A unit systemd gave up on (its start limit hit, or an exit it must not restart) is
    /// reset first: the owner pressed Start after fixing the cause.
    pub fn start(&self) -> Result<(), String> {
        if self.state().is_some_and(|s| s.active == "failed") {
            self.systemctl(&["reset-failed"])?;
        }
        self.systemctl(&["start", "--no-block"])
    }

    /// systemd sends SIGTERM (replies in progress finish) and waits `TimeoutStopSec`.
    pub fn stop(&self) -> Result<(), String> {
        self.systemctl(&["stop", "--no-block"])
    }

    /// A stop job first, so systemd does not restart what SIGKILL ends (`Restart=on-failure`).
    pub fn force_stop(&self) -> Result<(), String> {
        self.systemctl(&["stop", "--no-block"])?;
        self.systemctl(&["kill", "--signal=SIGKILL"])
    }

    pub fn state(&self) -> Option<UnitState> {
        let out = Command::new("systemctl")
            .args(["show", "--property=ActiveState,Result,ExecMainStatus", &self.name])
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let field = |key: &str| text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('=')).unwrap_or_default().trim().to_string();
        Some(UnitState { active: field("ActiveState"), result: field("Result"), status: field("ExecMainStatus") })
    }

    fn systemctl(&self, args: &[&str]) -> Result<(), String> {
        let shown = format!("systemctl {} {}", args.join(" "), self.name);
        let out =
            Command::new("systemctl").args(args).arg(&self.name).stdin(Stdio::null()).output().map_err(|e| format!("{shown}: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
        let hint = if why.contains("authentication") || why.contains("Access denied") {
            " (run the console as root, or allow this user to manage the unit with a polkit rule)"
        } else {
            ""
        };
        Err(format!("{shown} failed: {why}{hint}"))
    }

    /// Follows the unit's journal into `logs` for the console's life (the last 200 lines
    /// first). A journal that cannot be read is said once in the log.
    pub fn follow_journal(&self, logs: LogBook) -> tokio::task::JoinHandle<()> {
        let name = self.name.clone();
        tokio::spawn(async move {
            let child = tokio::process::Command::new("journalctl")
                .args(["--unit", &name, "--follow", "--lines=200", "--output=cat", "--no-pager"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn();
            let mut child = match child {
                Ok(child) => child,
                Err(e) => {
                    logs.push(&format!("console: cannot read the journal of {name} (journalctl: {e})"));
                    return;
                }
            };
            let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else { return };
            let errors = {
                let logs = logs.clone();
                tokio::spawn(async move {
                    let mut lines = tokio::io::BufReader::new(err).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        logs.push(&format!("console: journalctl: {line}"));
                    }
                })
            };
            let mut lines = tokio::io::BufReader::new(out).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                logs.push(&line);
            }
            let _ = errors.await;
            let _ = child.wait().await;
        })
    }
}

/// How the unit's last run ended, for a person.
pub fn ended(state: &UnitState) -> String {
    let number = state.status.parse().ok();
    match state.result.as_str() {
        "success" => super::bot::exit_words(Some(0), None),
        "exit-code" => super::bot::exit_words(number, None),
        "signal" | "core-dump" => super::bot::exit_words(None, number),
        "watchdog" => "stopped answering systemd's watchdog and was killed".into(),
        "timeout" => "did not start or stop in time".into(),
        "start-limit-hit" => "failed too often (systemd's start limit)".into(),
        other => format!("ended ({other})"),
    }
}

#[cfg(test)]
mod tests {
    use super::{ended, UnitState};

    fn state(result: &str, status: &str) -> UnitState {
        UnitState { active: "failed".into(), result: result.into(), status: status.into() }
    }

    #[test]
    fn a_failed_unit_is_explained() {
        assert_eq!(ended(&state("success", "0")), "exited normally (code 0)");
        assert_eq!(ended(&state("exit-code", "2")), "exited with code 2");
        assert_eq!(ended(&state("signal", "9")), "was killed (SIGKILL)");
        assert_eq!(ended(&state("core-dump", "11")), "was killed by signal 11");
        assert_eq!(ended(&state("watchdog", "6")), "stopped answering systemd's watchdog and was killed");
    }
}
