//! The web console (`sidekick console`) as its owner uses it: a real headless Chromium
//! (Debian's `chromium`, driven by `chromedriver` over WebDriver; `scripts/ci_tools.sh`
//! installs both) on the console process, which runs the real bot against the fake Discord.

mod browser;
mod http;
mod systemd;

use crate::fake_discord::FakeDiscord;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A `sidekick console` process, and the login link it printed.
pub struct ConsoleProcess {
    child: Child,
    pub base: String,
    pub token: String,
    pub socket: PathBuf,
}

impl ConsoleProcess {
    /// Starts the console on a free loopback port with the test bot's settings (the bot it
    /// starts inherits them), and reads the login link from its first line.
    pub async fn start(dir: &Path, fake: &FakeDiscord, env: &[(&str, &str)]) -> ConsoleProcess {
        let mut cmd = crate::support::sidekick(dir);
        crate::support::with_fake_discord(&mut cmd, fake)
            .arg("console")
            .env("SIDEKICK_CONSOLE_LISTEN", "127.0.0.1:0")
            .env("SIDEKICK_GENERATION_MAX_TOKENS", "48")
            // Never the service of a bot installed on the machine running the tests.
            .env("SIDEKICK_CONSOLE_SERVICE", "")
            .stdout(Stdio::piped())
            .stderr(crate::support::daemon_log(dir));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("sidekick console starts");
        let stdout = child.stdout.take().unwrap();
        let first = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            std::io::BufReader::new(stdout).read_line(&mut line).map(|_| line)
        });
        let line = match tokio::time::timeout(Duration::from_secs(30), first).await {
            Ok(Ok(Ok(line))) if line.contains("http") => line,
            other => {
                // A console that printed no link is not left running after the test.
                let _ = child.kill();
                let _ = child.wait();
                panic!("the console printed no link: {other:?}");
            }
        };
        let url = line.split_whitespace().find(|w| w.starts_with("http")).unwrap_or_default();
        // The link with the token is printed once, when the token is made; later the file has it.
        let (base, token) = match url.split_once("/login?token=") {
            Some((base, token)) => (base.to_string(), token.to_string()),
            None => (url.to_string(), std::fs::read_to_string(dir.join("store/console.token")).unwrap_or_default().trim().to_string()),
        };
        ConsoleProcess { child, base, token, socket: dir.join("store/sidekick.sock") }
    }

    pub fn login_url(&self) -> String {
        format!("{}/login?token={}", self.base, self.token)
    }

    /// SIGTERM, as Ctrl-C: the console stops the bot it started, then exits.
    pub async fn stop(mut self) -> Option<i32> {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        crate::support::exit_code(&mut self.child, Duration::from_secs(60)).await
    }
}

impl Drop for ConsoleProcess {
    /// A failed test still stops the bot: SIGTERM lets the console stop it, SIGKILL after.
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// chromedriver on a free port, and a WebDriver session of headless Chromium on it.
pub struct Browser {
    pub client: fantoccini::Client,
    driver: Child,
}

impl Browser {
    pub async fn open(width: u32, height: u32) -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = std::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is installed (./run.sh test runs scripts/ci_tools.sh, which installs Debian's chromium-driver)");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium(),
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", format!("--window-size={width},{height}")]
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match fantoccini::ClientBuilder::new(connector).capabilities(caps.clone()).connect(&url).await {
                Ok(client) => return Browser { client, driver },
                Err(e) if Instant::now() > deadline => panic!("no WebDriver session on {url}: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// A desktop-sized browser on `console`'s page, logged in with its link.
    pub async fn logged_in(console: &ConsoleProcess) -> Browser {
        let browser = Browser::open(1280, 1000).await;
        browser.client.goto(&console.login_url()).await.unwrap();
        browser
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }

    /// The text of `#id`, or "" while it is not there.
    pub async fn text(&self, id: &str) -> String {
        match self.client.find(fantoccini::Locator::Id(id)).await {
            Ok(e) => e.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Waits until `#id`'s text satisfies `ok`, and returns it.
    pub async fn wait_text(&self, id: &str, limit: Duration, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let text = self.text(id).await;
            if ok(&text) {
                return text;
            }
            if Instant::now() >= deadline {
                // The page's log says what the bot was doing.
                panic!("#{id} still says {text:?} after {limit:?}; the page's log:\n{}", self.text("log").await);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn click(&self, id: &str) {
        self.client.find(fantoccini::Locator::Id(id)).await.unwrap_or_else(|e| panic!("#{id}: {e}")).click().await.unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Debian installs the browser as `chromium`.
fn chromium() -> String {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"].iter().find(|p| Path::new(p).exists()).unwrap_or(&"/usr/bin/chromium").to_string()
}
