//! The console refuses whoever lacks the token, and state changes that lack the CSRF token,
//! over plain HTTP as a script (or another site) would send them.

use super::ConsoleProcess;
use crate::discord::{owner, BOT, CH1, GUILD};
use crate::fake_discord::FakeDiscord;
use reqwest::{redirect::Policy, StatusCode};
use sidekick::web::{COOKIE, CSRF_HEADER};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_or_no_csrf_token_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDiscord::start(BOT, owner(), GUILD, &[CH1]).await;
    let console = ConsoleProcess::start(dir.path(), &fake, &[]).await;
    let http = reqwest::Client::builder().redirect(Policy::none()).build().unwrap();
    let base = &console.base;
    let cookie = format!("{COOKIE}={}", console.token);

    // No token: the page sends a person to log in; the API says so.
    let page = http.get(format!("{base}/")).send().await.unwrap();
    assert_eq!((page.status(), page.headers()["location"].to_str().unwrap()), (StatusCode::SEE_OTHER, "/login"));
    assert_eq!(http.get(format!("{base}/api/state")).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(http.get(format!("{base}/api/logs")).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(http.post(format!("{base}/api/bot/start")).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let guessed = http.get(format!("{base}/api/state")).header("cookie", format!("{COOKIE}=guess")).send().await.unwrap();
    assert_eq!(guessed.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(http.get(format!("{base}/login?token=guess")).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);

    // Logged in, but no CSRF token (a form on another site): refused, and the bot stays stopped.
    for path in ["/api/bot/start", "/api/banners/clear", "/api/actions/backup"] {
        let refused = http.post(format!("{base}{path}")).header("cookie", &cookie).send().await.unwrap();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{path}");
        assert!(refused.text().await.unwrap().contains("no CSRF token"));
        let wrong = http.post(format!("{base}{path}")).header("cookie", &cookie).header(CSRF_HEADER, "0000").send().await.unwrap();
        assert_eq!(wrong.status(), StatusCode::FORBIDDEN, "{path}");
    }
    let state = http.get(format!("{base}/api/state")).header("cookie", &cookie).send().await.unwrap().text().await.unwrap();
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    assert_eq!((state["bot"]["phase"].as_str(), &state["job"]), (Some("stopped"), &serde_json::Value::Null), "{state}");

    // The login link sets the cookie; the page then carries the CSRF token, which works.
    let login = http.get(console.login_url()).send().await.unwrap();
    let set = login.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(set.starts_with(&cookie) && set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
    let html = http.get(format!("{base}/")).header("cookie", &cookie).send().await.unwrap().text().await.unwrap();
    let csrf = html.split(r#"name="csrf-token" content=""#).nth(1).and_then(|r| r.split('"').next()).unwrap().to_string();
    let cleared = http.post(format!("{base}/api/banners/clear")).header("cookie", &cookie).header(CSRF_HEADER, &csrf).send().await.unwrap();
    assert_eq!(cleared.status(), StatusCode::OK);
    // A script with the token as a bearer needs no CSRF token; a setting needs a running bot.
    let setting = http
        .post(format!("{base}/api/settings"))
        .bearer_auth(&console.token)
        .header("content-type", "application/json")
        .body(r#"{"key": "temperature", "value": "0.9"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(setting.status(), StatusCode::CONFLICT);
    assert!(setting.text().await.unwrap().contains("the bot is not running: start it to change settings"));

    // An action: a backup, run as `sidekick backup`, reported when done, and one at a time.
    let backup = http.post(format!("{base}/api/actions/backup")).bearer_auth(&console.token).send().await.unwrap();
    assert_eq!(backup.status(), StatusCode::OK);
    let again = http.post(format!("{base}/api/actions/dataset")).bearer_auth(&console.token).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::CONFLICT);
    assert!(again.text().await.unwrap().contains("Back up is still running"));
    let job = loop {
        let state = http.get(format!("{base}/api/state")).bearer_auth(&console.token).send().await.unwrap().text().await.unwrap();
        let state: serde_json::Value = serde_json::from_str(&state).unwrap();
        if state["job"]["running"] == false {
            break state["job"].clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(job["ok"], true, "{job}");
    let made: Vec<_> = std::fs::read_dir(dir.path().join("store/backups")).unwrap().collect();
    assert_eq!(made.len(), 1, "one backup folder: {job}");
    assert_eq!(console.stop().await, Some(0));
}

#[test]
fn a_non_loopback_address_is_refused_unless_plain_http_is_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let out = crate::support::sidekick(dir.path()).arg("console").env("SIDEKICK_CONSOLE_LISTEN", "0.0.0.0:0").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("0.0.0.0:0 is not a loopback address") && stderr.contains("console.allow_plain_http = true"), "{stderr}");
    let mut allowed = crate::support::sidekick(dir.path())
        .arg("console")
        .env("SIDEKICK_CONSOLE_LISTEN", "0.0.0.0:0")
        .env("SIDEKICK_CONSOLE_ALLOW_PLAIN_HTTP", "true")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(allowed.stdout.take().unwrap()), &mut line).unwrap();
    assert!(line.contains("http://0.0.0.0:"), "{line}");
    unsafe { libc::kill(allowed.id() as i32, libc::SIGTERM) };
    let status = allowed.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut allowed.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success() && stderr.contains("plain HTTP on a non-loopback address"), "{stderr}");
}

/// With a certificate the console serves HTTPS, on a non-loopback address too, with a
/// `Secure` cookie; plain HTTP and clients that do not trust the certificate get nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_certificate_it_serves_https_only() {
    let dir = tempfile::tempdir().unwrap();
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (dir.path().join("console.crt"), dir.path().join("console.key"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.key_pair.serialize_pem()).unwrap();

    // Half a configuration, or a key of another certificate: refused with the reason, exit 2.
    let other = dir.path().join("other.key");
    std::fs::write(&other, rcgen::KeyPair::generate().unwrap().serialize_pem()).unwrap();
    for (env, says) in [
        (vec![("SIDEKICK_CONSOLE_TLS_CERT", &cert)], "console.tls_cert and console.tls_key go together"),
        (vec![("SIDEKICK_CONSOLE_TLS_CERT", &cert), ("SIDEKICK_CONSOLE_TLS_KEY", &other)], "do not go together"),
        (vec![("SIDEKICK_CONSOLE_TLS_CERT", &key), ("SIDEKICK_CONSOLE_TLS_KEY", &key)], "no certificate in it"),
    ] {
        let out = crate::support::sidekick(dir.path()).arg("console").envs(env).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
    }

    let fake = FakeDiscord::start(BOT, owner(), GUILD, &[CH1]).await;
    let files = [("SIDEKICK_CONSOLE_TLS_CERT", cert.to_str().unwrap()), ("SIDEKICK_CONSOLE_TLS_KEY", key.to_str().unwrap())];
    let console = ConsoleProcess::start(dir.path(), &fake, &[("SIDEKICK_CONSOLE_LISTEN", "0.0.0.0:0"), files[0], files[1]]).await;
    assert!(console.base.starts_with("https://0.0.0.0:"), "{}", console.base);
    let port = console.base.rsplit(':').next().unwrap();
    let trusted = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(made.cert.pem().as_bytes()).unwrap())
        .redirect(Policy::none())
        .build()
        .unwrap();
    let base = format!("https://localhost:{port}");
    let login = trusted.get(format!("{base}/login?token={}", console.token)).send().await.unwrap();
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    let set = login.headers()["set-cookie"].to_str().unwrap();
    assert!(set.contains("HttpOnly") && set.contains("Secure"), "{set}");
    let state = trusted.get(format!("{base}/api/state")).bearer_auth(&console.token).send().await.unwrap();
    assert_eq!(state.status(), StatusCode::OK);

    let plain = reqwest::Client::new().get(format!("http://localhost:{port}/api/state")).bearer_auth(&console.token).send().await;
    assert!(plain.is_err(), "plain HTTP got an answer: {plain:?}");
    let untrusting = reqwest::Client::new().get(format!("{base}/api/state")).send().await;
    assert!(untrusting.is_err(), "a client that does not trust the certificate got an answer");
    // The console still answers after those failed handshakes.
    assert_eq!(trusted.get(format!("{base}/api/state")).bearer_auth(&console.token).send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(console.stop().await, Some(0));
}
