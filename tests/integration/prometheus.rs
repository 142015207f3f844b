//! The Grafana dashboard against a real Prometheus: Prometheus (Debian's package, installed by
//! `scripts/ci_tools.sh`) scrapes a running daemon while the fake Discord drives traffic, and
//! every PromQL query of every panel must return data.

use crate::discord::{alice, ask, mention, owner, reply_to, BOT, CH1, GUILD};
use crate::fake_discord::FakeDiscord;
use crate::support::{free_port, http_get, repo_root, sigkill, spawn_daemon};
use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Prometheus {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Scrapes `target` every second.
    fn start(target: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = format!("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: sidekick\n    static_configs:\n      - targets: ['{target}']\n");
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus is installed (./run.sh test runs scripts/ci_tools.sh, which installs Debian's package)");
        Prometheus { child, addr, _dir: dir }
    }

    /// The query's result vector, or the error Prometheus gave.
    fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let response = http_get(&self.addr, &format!("/api/v1/query?query={}", encode(expr)));
        let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
        // Chunked or not, the JSON object is the part between the outer braces.
        let json = body.find('{').and_then(|a| body.rfind('}').map(|b| &body[a..=b])).unwrap_or_default();
        let v: Value = serde_json::from_str(json).map_err(|e| format!("unreadable answer ({e}): {response}"))?;
        if v["status"] != "success" {
            return Err(format!("{}: {}", v["errorType"], v["error"]));
        }
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    fn scrapes_in_last_minute(&self) -> f64 {
        self.query("count_over_time(up[1m])").ok().and_then(|r| r.first().and_then(|s| s["value"][1].as_str()?.parse().ok())).unwrap_or(0.0)
    }
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// Every (panel title, expr) of a dashboard, rows' nested panels included.
fn queries(panels: &[Value], out: &mut Vec<(String, String)>) {
    for panel in panels {
        queries(panel["panels"].as_array().map_or(&[][..], |v| v), out);
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                out.push((panel["title"].as_str().unwrap_or("?").to_string(), expr.to_string()));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_returns_data_from_a_real_prometheus() {
    let dashboards = repo_root().join("grafana/dashboards");
    let mut all = Vec::new();
    for entry in std::fs::read_dir(&dashboards).unwrap().flatten() {
        let dashboard: Value = serde_json::from_slice(&std::fs::read(entry.path()).unwrap()).unwrap();
        queries(dashboard["panels"].as_array().unwrap(), &mut all);
    }
    assert!(all.len() >= 20, "the dashboard has its panels: {}", all.len());
    let provisioned = std::fs::read_to_string(repo_root().join("grafana/provisioning/datasources/sidekick.yaml")).unwrap();
    assert!(provisioned.contains("uid: sidekick-prometheus"), "panels name the provisioned datasource");

    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDiscord::start(BOT, owner(), GUILD, &[CH1]).await;
    let metrics = format!("127.0.0.1:{}", free_port());
    let root = repo_root();
    let (embed, onnx) = (root.join("models/embed/all-MiniLM-L6-v2-int8"), root.join("models/onnxruntime/libonnxruntime.so.1.31.1"));
    let mut daemon = spawn_daemon(
        dir.path(),
        &fake,
        &[
            ("SIDEKICK_METRICS_LISTEN", &metrics),
            ("SIDEKICK_RETRIEVAL_ENABLED", "true"),
            ("SIDEKICK_RETRIEVAL_MODEL_DIR", embed.to_str().unwrap()),
            ("SIDEKICK_RETRIEVAL_ONNXRUNTIME", onnx.to_str().unwrap()),
            ("SIDEKICK_RL_ENABLED", "true"),
            ("SIDEKICK_RL_SAVE_EVERY_STEPS", "1"),
        ],
    );
    let prometheus = Prometheus::start(&metrics);
    assert!(fake.wait_ready(Duration::from_secs(60)).await, "the daemon did not connect");

    // Traffic: chat (latency, tokens, retrieval), feedback and a reaction (one training step,
    // an adapter saved and swapped in).
    let mut last = None;
    for text in ["how do I mount a usb drive?", "my wifi drops after suspend", "which release should I upgrade to?"] {
        let id = mention(&fake, CH1, &alice(), text).await;
        last = Some(reply_to(&fake, id).await);
    }
    assert!(ask(&fake, CH1, &alice(), "!feedback 5 thanks, that helped").await.starts_with("Thanks!"));
    fake.react(CH1, last.unwrap().message_id, &alice(), "👍").await;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let rl = ask(&fake, CH1, &owner(), "!rl_metrics").await;
        if rl.contains("adapter v") {
            break;
        }
        assert!(Instant::now() < deadline, "no training step and adapter: {rl}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let id = mention(&fake, CH1, &alice(), "thanks, anything else?").await;
    reply_to(&fake, id).await;

    // Wait until rates over the traffic can be taken: a few scrapes after it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let start_scrapes = prometheus.scrapes_in_last_minute();
    while prometheus.scrapes_in_last_minute() < (start_scrapes + 3.0).clamp(3.0, 50.0) {
        assert!(Instant::now() < deadline, "prometheus is not scraping {metrics}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let mut empty = Vec::new();
    for (title, expr) in &all {
        let concrete = expr.replace("$__rate_interval", "1m").replace("$__range", "5m").replace("$__interval", "15s");
        assert!(!concrete.contains('$'), "{title}: a Grafana variable the test does not know: {expr}");
        match prometheus.query(&concrete) {
            Ok(result) if !result.is_empty() => {}
            Ok(_) => empty.push(format!("{title}: no data for {concrete}")),
            Err(e) => empty.push(format!("{title}: {e} for {concrete}")),
        }
    }
    sigkill(&mut daemon);
    assert!(empty.is_empty(), "{} of {} panel queries failed:\n{}", empty.len(), all.len(), empty.join("\n"));
}
