//! The bot installed as a systemd service: the console drives the unit with `systemctl` and
//! shows its journal, and leaves it running when the console stops. This machine has no
//! systemd, so `fake_systemd/` imitates the two commands for one unit (its ExecStart is the
//! real `sidekick run`, its journal a file); what is checked is the console's side: the
//! commands it gives, the bot it then sees, the log it shows.

use super::{Browser, ConsoleProcess};
use crate::discord::{ask, owner, BOT, CH1, GUILD};
use crate::fake_discord::FakeDiscord;
use std::path::Path;
use std::time::Duration;

const START: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_installed_service_is_driven_with_systemctl_and_outlives_the_console() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("systemd");
    std::fs::create_dir(&state).unwrap();
    let fakes = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/console/fake_systemd");
    let path = format!("{}:{}", fakes.display(), std::env::var("PATH").unwrap_or_default());
    let env = [
        ("SIDEKICK_CONSOLE_SERVICE", "sidekick.service"),
        ("PATH", path.as_str()),
        ("FAKE_SYSTEMD", state.to_str().unwrap()),
        ("SIDEKICK_BIN", env!("CARGO_BIN_EXE_sidekick")),
    ];
    let calls = || std::fs::read_to_string(state.join("calls")).unwrap_or_default();
    let _unit = StopsTheUnit(state.clone());
    let fake = FakeDiscord::start(BOT, owner(), GUILD, &[CH1]).await;

    let console = ConsoleProcess::start(dir.path(), &fake, &env).await;
    let browser = Browser::logged_in(&console).await;
    browser.wait_text("run-by", Duration::from_secs(10), |t| t == "systemd (sidekick.service)").await;
    assert_eq!(browser.text("phase").await, "Stopped");
    browser.click("start").await;
    browser.wait_text("phase", START, |t| t == "Running").await;
    assert!(calls().contains("start --no-block sidekick.service"), "{}", calls());
    // The log on the page is the unit's journal.
    browser.wait_text("log", Duration::from_secs(10), |t| t.contains("connected to Discord")).await;
    assert!(calls().contains("journalctl --unit sidekick.service --follow"), "{}", calls());
    assert!(ask(&fake, CH1, &owner(), "!config").await.contains("temperature"));
    browser.close().await;

    // The console stops; the service keeps running, and the next console finds it.
    assert_eq!(console.stop().await, Some(0));
    let pid: i32 = std::fs::read_to_string(state.join("pid")).expect("the service runs").trim().parse().unwrap();
    assert_eq!(unsafe { libc::kill(pid, 0) }, 0, "the bot (pid {pid}) outlived the console");
    let console = ConsoleProcess::start(dir.path(), &fake, &env).await;
    let browser = Browser::logged_in(&console).await;
    browser.wait_text("phase", Duration::from_secs(10), |t| t == "Running").await;

    // Without the right to manage the unit, Stop says why and how, and the bot stays Running.
    std::fs::write(state.join("deny"), "").unwrap();
    browser.click("stop").await;
    let said = browser.wait_text("notice", Duration::from_secs(10), |t| t.contains("Access denied")).await;
    assert!(said.contains("systemctl stop --no-block sidekick.service failed") && said.contains("run the console as root"), "{said}");
    browser.wait_text("phase", Duration::from_secs(5), |t| t == "Running").await;
    std::fs::remove_file(state.join("deny")).unwrap();

    // Stop goes to systemd, which sends SIGTERM: the bot exits 0 and the page says so.
    browser.click("stop").await;
    browser.wait_text("phase", Duration::from_secs(60), |t| t == "Stopped").await;
    assert!(calls().contains("stop --no-block sidekick.service"), "{}", calls());
    let exit = browser.wait_text("last-exit", Duration::from_secs(5), |t| t != "–").await;
    assert!(exit.starts_with("exited normally (code 0)"), "{exit}");
    assert_eq!(std::fs::read_to_string(state.join("result")).unwrap().trim(), "success");
    browser.close().await;
    assert_eq!(console.stop().await, Some(0));
}

/// A failed test leaves no bot running: the fake unit's process is killed.
struct StopsTheUnit(std::path::PathBuf);

impl Drop for StopsTheUnit {
    fn drop(&mut self) {
        if let Some(pid) = std::fs::read_to_string(self.0.join("pid")).ok().and_then(|p| p.trim().parse::<i32>().ok()) {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}
