//! The console's HTTP routes: the page, its state, the buttons, the settings and the logs.

use super::actions::{Action, JobView, Jobs};
use super::auth::{Changer, Keys, Viewer};
use super::bot::{Bot, BotView};
use super::page;
use crate::config::Config;
use crate::control::{self, Request, Response as ControlResponse};
use axum::extract::{FromRef, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use futures_util::stream::{self, Stream, StreamExt};
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::watch;

#[derive(Clone)]
pub struct AppState {
    pub keys: Keys,
    pub bot: Bot,
    jobs: Jobs,
    socket: Arc<PathBuf>,
    prefix: Arc<String>,
    /// The settings that need a restart, as the page lists them.
    restart_settings: Arc<Vec<(String, String)>>,
    /// Turns true when the console stops, which ends the live log streams.
    pub closing: watch::Sender<bool>,
}

impl FromRef<AppState> for Keys {
    fn from_ref(state: &AppState) -> Keys {
        state.keys.clone()
    }
}

impl AppState {
    pub fn new(config: &Config, keys: Keys, bot: Bot, jobs: Jobs) -> AppState {
        AppState {
            keys,
            bot,
            jobs,
            socket: Arc::new(control::socket_path(config)),
            prefix: Arc::new(config.chat.prefix.clone()),
            restart_settings: Arc::new(page::restart_settings(config)),
            closing: watch::channel(false).0,
        }
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/login", get(login_page).post(login_form))
        .route("/api/state", get(current))
        .route("/api/bot/{what}", post(bot_action))
        .route("/api/settings", post(change_setting))
        .route("/api/actions/{name}", post(run_action))
        .route("/api/banners/clear", post(clear_banners))
        .route("/api/logs", get(live_logs))
        .route("/logs.txt", get(download_logs))
        .route("/console.css", get(|| async { ([(header::CONTENT_TYPE, "text/css")], page::CSS) }))
        .route("/console.js", get(|| async { ([(header::CONTENT_TYPE, "text/javascript")], page::JS) }))
        .with_state(state)
}

async fn index(_: Viewer, State(state): State<AppState>) -> Response {
    match page::render_console(state.keys.csrf(), &state.restart_settings) {
        Ok(html) => Html(html).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("the page could not be drawn: {e}")).into_response(),
    }
}

#[derive(Deserialize)]
struct TokenForm {
    token: Option<String>,
}

/// `/login?token=…` (the URL the console prints) logs in at once; `/login` alone asks.
async fn login_page(State(state): State<AppState>, Query(form): Query<TokenForm>) -> Response {
    match form.token {
        Some(token) => log_in(&state.keys, &token),
        None => Html(page::render_login(None).unwrap_or_default()).into_response(),
    }
}

async fn login_form(State(state): State<AppState>, Form(form): Form<TokenForm>) -> Response {
    log_in(&state.keys, form.token.as_deref().unwrap_or(""))
}

fn log_in(keys: &Keys, token: &str) -> Response {
    if keys.is_token(token.trim()) {
        // The token leaves the address bar: the cookie carries it from now on.
        ([(header::SET_COOKIE, keys.login_cookie())], Redirect::to("/")).into_response()
    } else {
        let page = page::render_login(Some("That is not the console's token.")).unwrap_or_default();
        (StatusCode::UNAUTHORIZED, Html(page)).into_response()
    }
}

#[derive(Serialize)]
struct CurrentState {
    bot: BotView,
    job: Option<JobView>,
}

async fn current(_: Viewer, State(state): State<AppState>) -> Json<CurrentState> {
    Json(CurrentState { bot: state.bot.view(), job: state.jobs.view() })
}

/// What a button did, for the page to show.
#[derive(Serialize)]
struct Outcome {
    ok: bool,
    message: String,
}

fn outcome(result: Result<String, String>) -> Response {
    match result {
        Ok(message) => Json(Outcome { ok: true, message }).into_response(),
        Err(message) => (StatusCode::CONFLICT, Json(Outcome { ok: false, message })).into_response(),
    }
}

async fn bot_action(_: Changer, State(state): State<AppState>, Path(what): Path<String>) -> Response {
    let bot = &state.bot;
    match what.as_str() {
        "start" => outcome(bot.start()),
        "stop" => outcome(bot.stop()),
        "force-stop" => outcome(bot.force_stop()),
        "restart" => {
            if let Err(e) = bot.stop() {
                return outcome(Err(e));
            }
            let bot = bot.clone();
            tokio::spawn(async move {
                if bot.stopped(std::time::Duration::from_secs(120)).await {
                    let _ = bot.start();
                } else {
                    bot.banner("Restart: the bot did not stop within 2 minutes; use Force stop, then Start.");
                }
            });
            outcome(Ok("Restarting: stopping first.".into()))
        }
        _ => (StatusCode::NOT_FOUND, "no such button").into_response(),
    }
}

#[derive(Deserialize)]
struct SettingChange {
    key: String,
    value: String,
}

/// A setting becomes the admin command that changes it, run by the daemon as the owner's.
fn setting_command(prefix: &str, key: &str, value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() || value.contains(char::is_whitespace) {
        return Err(format!("{key}: give one value, without spaces"));
    }
    let command = match key {
        "reply_rate" => "setrate",
        "temperature" => "settemp",
        "max_tokens" => "setmaxlen",
        "mentions_only" => "mentions_only",
        "allow" => "allow",
        "deny" => "deny",
        _ => return Err(format!("{key} is not a setting the console changes")),
    };
    Ok(format!("{prefix}{command} {value}"))
}

async fn change_setting(_: Changer, State(state): State<AppState>, Json(change): Json<SettingChange>) -> Response {
    let text = match setting_command(&state.prefix, &change.key, &change.value) {
        Ok(text) => text,
        Err(e) => return (StatusCode::BAD_REQUEST, Json(Outcome { ok: false, message: e })).into_response(),
    };
    match control::ask(&state.socket, &Request::Command { text }).await {
        Ok(ControlResponse::Answer(answer)) => Json(Outcome { ok: true, message: answer }).into_response(),
        Ok(ControlResponse::Error(e)) => outcome(Err(e)),
        Ok(_) => outcome(Err("the bot gave an unexpected answer".into())),
        Err(control::AskError::NotRunning(_)) => {
            outcome(Err("the bot is not running: start it to change settings (they are kept in its store)".into()))
        }
        Err(e) => outcome(Err(e.to_string())),
    }
}

async fn run_action(_: Changer, State(state): State<AppState>, Path(name): Path<String>) -> Response {
    match Action::parse(&name) {
        Some(action) => outcome(state.jobs.start(action)),
        None => (StatusCode::NOT_FOUND, "no such action").into_response(),
    }
}

async fn clear_banners(_: Changer, State(state): State<AppState>) -> Response {
    state.bot.clear_banners();
    outcome(Ok("Cleared.".into()))
}

#[derive(Deserialize)]
struct After {
    #[serde(default)]
    after: u64,
}

/// The log, live: what was kept after `after`, then each new line, until the console stops.
async fn live_logs(
    _: Viewer,
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    Query(After { after }): Query<After>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    // A browser reconnecting says which line it saw last.
    let resumed = headers.get("last-event-id").and_then(|v| v.to_str().ok()?.parse().ok());
    let (backlog, receiver) = state.bot.logs.follow(resumed.unwrap_or(after));
    let closing = state.closing.subscribe();
    let event = |line: &super::logs::LogLine| Event::default().id(line.seq.to_string()).json_data(line).unwrap_or_default();
    let first = stream::iter(backlog.iter().map(event).map(Ok).collect::<Vec<_>>());
    let live = stream::unfold((receiver, closing), move |(mut receiver, mut closing)| async move {
        loop {
            let line = tokio::select! {
                line = receiver.recv() => line,
                _ = closing.wait_for(|c| *c) => return None,
            };
            match line {
                Ok(line) => return Some((Ok(event(&line)), (receiver, closing))),
                // Too slow a page: it skips ahead (the download has everything kept).
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return None,
            }
        }
    });
    Sse::new(first.chain(live)).keep_alive(KeepAlive::default())
}

async fn download_logs(_: Viewer, State(state): State<AppState>) -> Response {
    let headers =
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::CONTENT_DISPOSITION, "attachment; filename=\"sidekick.log\"")];
    (headers, state.bot.logs.text()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_setting_becomes_its_admin_command_and_odd_values_are_refused() {
        assert_eq!(setting_command("!", "temperature", "0.9"), Ok("!settemp 0.9".into()));
        assert_eq!(setting_command("?", "mentions_only", "on"), Ok("?mentions_only on".into()));
        assert_eq!(setting_command("!", "allow", " 123 "), Ok("!allow 123".into()));
        assert!(setting_command("!", "temperature", "0.9 !forget 1").is_err());
        assert!(setting_command("!", "temperature", "").is_err());
        assert!(setting_command("!", "token", "x").unwrap_err().contains("not a setting"));
    }
}
