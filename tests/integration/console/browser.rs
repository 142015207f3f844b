//! The console in headless Chromium: start, tune, watch and stop the bot as its owner would.

use super::{Browser, ConsoleProcess};
use crate::discord::{alice, ask, mention, owner, reply_to, BOT, CH1, GUILD};
use crate::fake_discord::FakeDiscord;
use fantoccini::key::Key;
use fantoccini::Locator;
use sidekick::control::{self, Request, Response};
use std::time::{Duration, SystemTime};

/// Loading the model and connecting to the fake Discord takes a few seconds here.
const START: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_starts_tunes_and_stops_the_bot_from_the_page() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDiscord::start(BOT, owner(), GUILD, &[CH1]).await;
    let console = ConsoleProcess::start(dir.path(), &fake, &[]).await;
    let browser = Browser::logged_in(&console).await;
    assert_eq!(browser.wait_text("phase", Duration::from_secs(10), |t| t == "Stopped").await, "Stopped");

    // Start: Running within the time the model takes to load.
    browser.click("start").await;
    // The live log shows the bot's own line within a second of the bot writing it (watched
    // from before the bot writes it).
    let (written, seen) = log_line_latency(&browser, "connected to Discord").await;
    assert!(seen - written < 1.0, "the line reached the page {:.3} s after the bot wrote it", seen - written);
    browser.wait_text("phase", START, |t| t == "Running").await;
    // The Discord token is nowhere on the page: not in the settings read at start, not in the log.
    let page = browser.client.source().await.unwrap();
    assert!(page.contains("Read at start") && !page.contains("fake-token"), "the page shows the Discord token");

    // The temperature slider, with the keyboard: four steps of 0.05 up from 0.7.
    let slider =
        browser.client.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css("#temperature:not([disabled])")).await.unwrap();
    assert_eq!(slider.prop("value").await.unwrap().as_deref(), Some("0.7"));
    slider.send_keys(&Key::Right.to_string().repeat(4)).await.unwrap();
    browser.wait_text("notice", Duration::from_secs(10), |t| t == "Default temperature set to 0.9.").await;
    let shown = ask(&fake, CH1, &owner(), "!config").await;
    assert!(shown.contains("temperature = 0.9"), "{shown}");
    browser.wait_text("temperature-value", Duration::from_secs(5), |t| t == "0.90").await;

    // The allowlist by name: the channel is offered with its name, and listed with it.
    let offered = browser.client.find(Locator::Css(&format!("#known-channels option[value='{CH1}']"))).await.unwrap();
    assert_eq!(offered.attr("label").await.unwrap().as_deref(), Some("#channel-0 (Fake Guild)"));
    browser.client.find(Locator::Id("allow-id")).await.unwrap().send_keys(&format!("{CH1}\n")).await.unwrap();
    let listed = browser.wait_text("allowlist", Duration::from_secs(10), |t| !t.is_empty()).await;
    assert!(listed.starts_with("#channel-0 (Fake Guild)") && listed.contains(&CH1.to_string()), "{listed}");
    let said = browser.text("notice").await;
    assert!(said.starts_with("#channel-0 (Fake Guild) is on the allowlist"), "the answer names the channel too: {said}");

    // The page as the README shows it, at desktop and phone width.
    screenshot(&browser, "console-desktop.png").await;
    browser.client.set_window_size(390, 1700).await.unwrap();
    screenshot(&browser, "console-phone.png").await;
    browser.client.set_window_size(1280, 1000).await.unwrap();

    // Stop while a reply is being written: it is finished and sent, then the bot exits 0.
    let asked = mention(&fake, CH1, &alice(), "tell me about your favourite linux distribution").await;
    assert!(fake.wait_typing(CH1, Duration::from_secs(60)).await, "the bot never started the reply");
    browser.click("stop").await;
    browser.wait_text("phase", Duration::from_secs(60), |t| t == "Stopped").await;
    let exit = browser.wait_text("last-exit", Duration::from_secs(5), |t| t != "–").await;
    assert!(exit.starts_with("exited normally (code 0)"), "{exit}");
    let reply = reply_to(&fake, asked).await;
    assert!(!reply.content().trim().is_empty(), "the reply in flight was sent whole");
    browser.close().await;
    assert_eq!(console.stop().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_stop_kills_a_bot_stuck_in_a_reply_and_the_banner_explains() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDiscord::start(BOT, owner(), GUILD, &[CH1]).await;
    let console = ConsoleProcess::start(dir.path(), &fake, &[("SIDEKICK_FAULT_INJECTION", "1")]).await;
    let browser = Browser::logged_in(&console).await;
    browser.wait_text("phase", Duration::from_secs(10), |t| t == "Stopped").await;
    browser.click("start").await;
    browser.wait_text("phase", START, |t| t == "Running").await;
    let pid = bot_pid(&console).await;
    // The engine hangs inside its next step, as in a llama.cpp call that never returns.
    let stalled = control::ask(&console.socket, &Request::Panic { actor: "engine-stall".into() }).await;
    assert!(matches!(stalled, Ok(Response::Done)), "{stalled:?}");
    let sent_before = fake.sent().len();
    mention(&fake, CH1, &alice(), "hello?").await;
    assert!(fake.wait_typing(CH1, Duration::from_secs(60)).await, "the bot never started the reply");
    browser.click("force-stop").await;
    browser.client.accept_alert().await.unwrap();
    browser.wait_text("phase", Duration::from_secs(10), |t| t == "Stopped").await;
    let banner = browser.wait_text("banners", Duration::from_secs(5), |t| !t.is_empty()).await;
    assert!(banner.contains("Force stop: the bot was killed (SIGKILL)") && banner.contains("reply it was writing is lost"), "{banner}");
    assert!(browser.text("last-exit").await.starts_with("was killed (SIGKILL)"));
    assert_eq!(unsafe { libc::kill(pid, 0) }, -1, "pid {pid} is gone");
    assert_eq!(fake.sent().len(), sent_before, "the stuck reply was never sent");
    browser.close().await;
    assert_eq!(console.stop().await, Some(0));
}

/// When the bot wrote the first log line containing `needle` (its own timestamp) and when the
/// page showed it, in seconds of the UTC day.
async fn log_line_latency(browser: &Browser, needle: &str) -> (f64, f64) {
    let deadline = std::time::Instant::now() + START;
    loop {
        let log = browser.text("log").await;
        let seen = seconds_of_day(SystemTime::now());
        if let Some(line) = log.lines().find(|l| l.contains(needle)) {
            let stamp = line.split_whitespace().next().unwrap_or_default();
            let written = parse_stamp(stamp).unwrap_or_else(|| panic!("no timestamp in {line:?}"));
            return (written, seen);
        }
        assert!(std::time::Instant::now() < deadline, "no {needle:?} in the page's log:\n{log}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn seconds_of_day(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs_f64() % 86_400.0
}

/// `2026-12-03T10:47:54.123456Z` → seconds since that day's midnight (UTC).
fn parse_stamp(stamp: &str) -> Option<f64> {
    let time = stamp.split_once('T')?.1.trim_end_matches('Z');
    let mut parts = time.split(':');
    let (h, m, s): (f64, f64, f64) = (parts.next()?.parse().ok()?, parts.next()?.parse().ok()?, parts.next()?.parse().ok()?);
    Some(h * 3600.0 + m * 60.0 + s)
}

/// A PNG of the page; kept in `$SIDEKICK_SCREENSHOTS` when set (the README's pictures).
async fn screenshot(browser: &Browser, name: &str) {
    let png = browser.client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{name}: {} bytes", png.len());
    if let Some(dir) = std::env::var_os("SIDEKICK_SCREENSHOTS") {
        std::fs::write(std::path::Path::new(&dir).join(name), png).unwrap();
    }
}

/// The banners an owner meets: a crash the console restarted, a token Discord refuses (exit
/// code 2: not restarted, it needs the owner), and a model file that is not there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn banners_explain_a_crash_a_refused_token_and_a_missing_model() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDiscord::start(BOT, owner(), GUILD, &[CH1]).await;
    let console = ConsoleProcess::start(dir.path(), &fake, &[]).await;
    let browser = Browser::logged_in(&console).await;
    browser.wait_text("phase", Duration::from_secs(10), |t| t == "Stopped").await;
    browser.click("start").await;
    browser.wait_text("phase", START, |t| t == "Running").await;

    // A crash (here SIGKILL from outside, as the kernel's OOM killer would): restarted, and said.
    let first = bot_pid(&console).await;
    unsafe { libc::kill(first, libc::SIGKILL) };
    let banner = browser.wait_text("banners", Duration::from_secs(10), |t| !t.is_empty()).await;
    assert!(banner.contains("The bot was killed (SIGKILL) at") && banner.contains("the console restarted it"), "{banner}");
    browser.wait_text("phase", START, |t| t == "Running").await;
    let second = bot_pid(&console).await;
    assert_ne!(second, first, "a new bot process runs");
    browser.client.find(Locator::Css("#banners button")).await.unwrap().click().await.unwrap();
    browser.wait_text("banners", Duration::from_secs(5), |t| t.is_empty()).await;

    // The token is reset in the developer portal: the restarted bot exits 2 and stays down.
    fake.refuse_token();
    browser.click("restart").await;
    browser.wait_text("phase", START, |t| t == "Error").await;
    let banner = browser.wait_text("banners", Duration::from_secs(5), |t| !t.is_empty()).await;
    assert!(
        banner.contains("exited with code 2") && banner.contains("needs you") && banner.contains("Discord refused the token"),
        "{banner}"
    );
    assert!(browser.text("last-exit").await.starts_with("exited with code 2"));
    browser.close().await;
    assert_eq!(console.stop().await, Some(0));

    // A console whose model file is missing says so, and what to run, instead of starting.
    let other = tempfile::tempdir().unwrap();
    let missing = other.path().join("no-model.gguf");
    let console = ConsoleProcess::start(other.path(), &fake, &[("SIDEKICK_MODEL_PATH", missing.to_str().unwrap())]).await;
    let browser = Browser::logged_in(&console).await;
    browser.wait_text("phase", Duration::from_secs(10), |t| t == "Stopped").await;
    browser.click("start").await;
    let banner = browser.wait_text("banners", Duration::from_secs(5), |t| !t.is_empty()).await;
    assert!(banner.contains("no-model.gguf") && banner.contains("./run.sh setup"), "{banner}");
    assert_eq!(browser.text("phase").await, "Stopped");
    browser.close().await;
    assert_eq!(console.stop().await, Some(0));
}

async fn bot_pid(console: &ConsoleProcess) -> i32 {
    match control::ask(&console.socket, &Request::Status).await {
        Ok(Response::Status(s)) => s.pid as i32,
        other => panic!("{other:?}"),
    }
}
