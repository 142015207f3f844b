//! `sidekick backup` against a daemon under the shipped unit's sandbox. systemd does not run
//! here (no `systemd-run`), so the sandbox is built as systemd builds it, with a mount
//! namespace (`unshare`): everything read-only (ProtectSystem=strict) but the daemon's own
//! folder (ReadWritePaths), and a temporary folder of its own where the operator has theirs
//! (PrivateTmp=yes gives it a whole `/tmp` of its own; hiding all of `/tmp` here would hide a
//! checkout that lives there, with the binary and models). ProtectHome is left out for the
//! same reason.

use crate::discord::{alice, mention, owner, BOT, CH1, GUILD};
use crate::fake_discord::FakeDiscord;
use crate::support::{daemon_command, daemon_log, sidekick_cli, sigkill};
use std::path::Path;
use std::time::Duration;

/// The mounts systemd makes for the unit, then the daemon.
const SANDBOX: &str = r#"set -e
mount --bind "$SANDBOX_RW" "$SANDBOX_RW"
mount -t tmpfs tmpfs "$SANDBOX_PRIVATE_TMP"
mount -o remount,bind,ro /
exec "$@""#;

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The daemon in the sandbox; `private_tmp` is the operator's temporary folder, which the
/// daemon sees as another, empty one.
async fn spawn_sandboxed(dir: &Path, private_tmp: &Path, fake: &FakeDiscord) -> std::process::Child {
    let inner = daemon_command(dir, fake, &[]);
    let mut outer = std::process::Command::new("unshare");
    outer.args(["-m", "--propagation", "private", "sh", "-c", SANDBOX, "sandbox"]).arg(inner.get_program()).args(inner.get_args());
    for (key, value) in inner.get_envs() {
        match value {
            Some(value) => outer.env(key, value),
            None => outer.env_remove(key),
        };
    }
    outer
        .env("SANDBOX_RW", dir)
        .env("SANDBOX_PRIVATE_TMP", private_tmp)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(daemon_log(dir));
    let before = fake.connections();
    let child = outer.spawn().expect("unshare runs (util-linux)");
    assert!(
        fake.wait_ready_after(before, Duration::from_secs(60)).await,
        "the sandboxed daemon did not connect (unshare needs root: mount namespaces); its log: {}",
        crate::support::daemon_stderr(dir)
    );
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_under_the_units_sandbox_writes_where_asked_or_refuses_with_the_reason() {
    // Outside /tmp: the sandbox hides the real one.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let in_tmp = tempfile::tempdir().unwrap();
    let fake = FakeDiscord::start(BOT, owner(), GUILD, &[CH1]).await;
    let mut daemon = spawn_sandboxed(dir.path(), in_tmp.path(), &fake).await;
    mention(&fake, CH1, &alice(), "remember the lighthouse").await;

    // The temporary folder is the daemon's own: it refuses rather than write where the
    // operator cannot look.
    let wanted = in_tmp.path().join("backup");
    let out = sidekick_cli(dir.path(), &["backup", wanted.to_str().unwrap()]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("PrivateTmp") && text(&out).contains(&dir.path().join("store/backups").display().to_string()),
        "{}",
        text(&out)
    );
    assert!(!wanted.exists());

    // Outside its ReadWritePaths the file system is read-only to it: refused, with the reason.
    let elsewhere = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let wanted = elsewhere.path().join("backup");
    let out = sidekick_cli(dir.path(), &["backup", wanted.to_str().unwrap()]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("cannot write to") && text(&out).contains("ReadWritePaths"), "{}", text(&out));
    assert!(!wanted.exists());

    // Where the service writes, the backup is written and seen by the operator.
    let wanted = dir.path().join("store/backups/first");
    let out = sidekick_cli(dir.path(), &["backup", wanted.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(wanted.join("backup.json").is_file() && wanted.join("store").is_dir());
    sigkill(&mut daemon);
}
