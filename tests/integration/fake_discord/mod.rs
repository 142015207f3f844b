//! A fake Discord for tests: REST over plain HTTP plus a gateway websocket, both on 127.0.0.1,
//! good enough for the real serenity 0.12 `Client` to connect, receive events and answer.
//!
//! Point serenity at it with `HttpBuilder::new(token).proxy(fake.api_base())`: serenity then
//! replaces `https://discord.com` with that base, so requests arrive as `/api/v10/...`. The
//! gateway address comes from our `GET /api/v10/gateway` (and `/gateway/bot`) answers. Careful:
//! if that lookup fails, serenity silently falls back to the REAL gateway.
//!
//! What it does, as real Discord does it:
//! - HELLO on connect; IDENTIFY gets READY then GUILD_CREATE (one guild, its text channels, the
//!   bot and the owner as members; @everyone may view, send, read history and react, which is
//!   what serenity's cache-based permission check before sending looks at);
//! - HEARTBEAT gets HEARTBEAT_ACK; RESUME of the current session replays the missed dispatches
//!   and then RESUMED; an unknown session gets INVALID_SESSION (false), so serenity re-identifies;
//! - messages and reactions the bot makes over REST come back to it as gateway dispatches;
//! - slash commands: registration by bulk overwrite, INTERACTION_CREATE, deferred answers
//!   edited in and follow-ups (`interactions.rs`).
//!
//! Payloads are sent as uncompressed text frames, which serenity accepts although its IDENTIFY
//! asks for `compress: true`.
#![allow(dead_code)] // each test binary uses a different part of it

mod gateway;
mod history;
mod interactions;
mod json;
mod rest;

pub use history::Historic;
pub use interactions::Answer;

use gateway::{dispatch, serve_gateway};
use json::*;
use rest::{serve_http, NewMessage};

use futures::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{server::conn::http1, service::service_fn, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use sidekick_actors::sync::LockExt;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Discord's own interval. serenity re-identifies (a new session, so missed dispatches are
/// gone) when an acknowledgement is late by one interval, and a loaded CI machine can stall a
/// test's runtime for seconds; a dropped connection shows at once anyway, as a read error.
const HEARTBEAT_MS: u64 = 41_250;
/// Discord's snowflake epoch (2015-01-01), in Unix milliseconds.
const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;
/// @everyone: VIEW_CHANNEL | SEND_MESSAGES | EMBED_LINKS | ATTACH_FILES | READ_MESSAGE_HISTORY
/// | ADD_REACTIONS. Enough for replies and reactions, and no ADMINISTRATOR to hide a missing bit.
const EVERYONE_PERMISSIONS: u64 = (1 << 10) | (1 << 11) | (1 << 14) | (1 << 15) | (1 << 16) | (1 << 6);

#[derive(Clone, Debug)]
pub struct FakeUser {
    pub id: u64,
    pub name: String,
    pub bot: bool,
}

impl FakeUser {
    pub fn new(id: u64, name: &str) -> Self {
        Self { id, name: name.to_string(), bot: false }
    }
}

/// One `POST /channels/{id}/messages` the bot made.
#[derive(Clone, Debug)]
pub struct SentMessage {
    pub channel_id: u64,
    /// The id the fake gave the new message (use it as `reply_to` to answer the bot).
    pub message_id: u64,
    /// The JSON body exactly as serenity sent it.
    pub body: Value,
    /// When the fake received it (the soak benchmark's reply latency ends here).
    pub received: std::time::Instant,
}

impl SentMessage {
    pub fn content(&self) -> &str {
        self.body["content"].as_str().unwrap_or("")
    }
    /// The id of the message this one replies to (`message_reference.message_id`).
    pub fn reference(&self) -> Option<u64> {
        id_of(&self.body["message_reference"]["message_id"])
    }
    /// serenity sends an empty `CreateAllowedMentions` as `{"parse":[],"users":[],"roles":[]}`.
    pub fn allowed_mentions(&self) -> Option<&Value> {
        self.body.get("allowed_mentions")
    }
}

#[derive(Clone)]
pub struct FakeDiscord {
    inner: Arc<Inner>,
}

struct Inner {
    bot: FakeUser,
    owner: FakeUser,
    guild_id: u64,
    channel_ids: Vec<u64>,
    http_addr: SocketAddr,
    ws_addr: SocketAddr,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    requests: Vec<String>,
    sent: Vec<SentMessage>,
    typing: HashMap<u64, usize>,
    bot_reactions: Vec<(u64, u64, String)>,
    /// Every message so far (users' and the bot's), for `referenced_message` and GETs.
    messages: HashMap<u64, Value>,
    /// user id -> the id of the DM channel between that user and the bot.
    dm_channels: HashMap<u64, u64>,
    users: HashMap<u64, FakeUser>,
    last_id: u64,
    connections: usize,
    heartbeats: usize,
    /// The newest websocket; dispatches go to it once it has identified or resumed (`live`).
    current: Option<Conn>,
    session_id: String,
    seq: u64,
    /// Every dispatch payload ever made, in order; this session's start at `session_start`.
    dispatched: Vec<Value>,
    session_start: usize,
    /// Answer IDENTIFY by closing with this code.
    close_on_identify: Option<u16>,
    /// Intents the application may not use: an IDENTIFY asking for any is closed with 4014.
    refuse_intents: u64,
    /// The intents of each IDENTIFY let through, in order.
    identified_intents: Vec<u64>,
    /// Drop every gateway connection at once, as if Discord were unreachable.
    dark: bool,
    /// A heartbeat interval other than Discord's, for tests that wait for serenity to notice
    /// a lost connection (it does at its next heartbeat).
    heartbeat_ms: Option<u64>,
    /// Every REST call answers 401, as for a token Discord does not know.
    refuse_token: bool,
    /// thread id -> its parent channel.
    threads: HashMap<u64, u64>,
    listing: history::Listing,
    slash: interactions::Slash,
    /// Every edit the bot made to its messages, in order.
    edits: Vec<Edit>,
}

/// One `PATCH /channels/{id}/messages/{id}` the bot made.
#[derive(Clone, Debug)]
pub struct Edit {
    pub channel_id: u64,
    pub message_id: u64,
    pub body: Value,
    pub received: std::time::Instant,
}

struct Conn {
    id: usize,
    tx: mpsc::UnboundedSender<Out>,
    live: bool,
}

enum Out {
    Frame(Value),
    /// Close the TCP connection without a websocket close frame, like a network failure.
    Drop,
    /// Close the websocket with this close code, as Discord does for a refused token (4004).
    Close(u16),
}

impl FakeDiscord {
    /// Starts the REST and gateway listeners on ports the OS picks. `bot_id` is the bot user,
    /// `owner` the application owner (also the guild owner); the guild and its text channels
    /// have the given fixed ids.
    pub async fn start(bot_id: u64, owner: FakeUser, guild_id: u64, channel_ids: &[u64]) -> FakeDiscord {
        let http = TcpListener::bind("127.0.0.1:0").await.expect("bind the fake REST port");
        let ws = TcpListener::bind("127.0.0.1:0").await.expect("bind the fake gateway port");
        let bot = FakeUser { id: bot_id, name: "Sidekick".into(), bot: true };
        let mut state = State::default();
        for user in [&bot, &owner] {
            state.users.insert(user.id, user.clone());
        }
        let inner = Arc::new(Inner {
            bot,
            owner,
            guild_id,
            channel_ids: channel_ids.to_vec(),
            http_addr: http.local_addr().unwrap(),
            ws_addr: ws.local_addr().unwrap(),
            state: Mutex::new(state),
        });
        tokio::spawn(serve_http(inner.clone(), http));
        tokio::spawn(serve_gateway(inner.clone(), ws));
        FakeDiscord { inner }
    }

    /// The base to give `HttpBuilder::proxy`, e.g. `http://127.0.0.1:40123`.
    pub fn api_base(&self) -> String {
        format!("http://{}", self.inner.http_addr)
    }

    pub fn bot(&self) -> FakeUser {
        self.inner.bot.clone()
    }

    /// Waits until the bot has a live gateway session: identified and sent READY, or resumed.
    /// After `drop_gateway` this waits for the reconnection.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        self.wait_for(timeout, |st| st.current.as_ref().is_some_and(|c| c.live)).await
    }

    /// Like `wait_ready`, on a connection newer than the first `before` ones: not a session a
    /// stopped or killed bot left, whose end the fake may not have noticed yet.
    pub async fn wait_ready_after(&self, before: usize, timeout: Duration) -> bool {
        self.wait_for(timeout, |st| st.connections > before && st.current.as_ref().is_some_and(|c| c.live)).await
    }

    /// `author` says `content` in `channel_id` (one of the guild's); returns the new message's id.
    /// `mention_bot` lists the bot in `mentions` (putting `<@bot_id>` in the text is up to the
    /// caller; Discord also lists the author of a replied-to message when the reply pings);
    /// `reply_to` sets `message_reference`, and `referenced_message` when the fake knows it.
    pub async fn user_says(&self, channel_id: u64, author: &FakeUser, content: &str, mention_bot: bool, reply_to: Option<u64>) -> u64 {
        let mentions = if mention_bot { vec![user_json(&self.inner.bot)] } else { vec![] };
        self.inner.post_message(NewMessage { channel_id, author, content, mentions, reply_to })
    }

    /// `author` says `content` to the bot in their DM channel (no `guild_id`); returns its id.
    pub async fn dm(&self, author: &FakeUser, content: &str) -> u64 {
        let channel_id = self.inner.dm_channel(author);
        self.inner.post_message(NewMessage { channel_id, author, content, mentions: vec![], reply_to: None })
    }

    /// The DM channel between `user` and the bot (created on first use).
    pub fn dm_channel(&self, user: &FakeUser) -> u64 {
        self.inner.dm_channel(user)
    }

    pub async fn react(&self, channel_id: u64, message_id: u64, user: &FakeUser, emoji: &str) {
        self.inner.reaction(true, channel_id, message_id, user, emoji);
    }

    pub async fn unreact(&self, channel_id: u64, message_id: u64, user: &FakeUser, emoji: &str) {
        self.inner.reaction(false, channel_id, message_id, user, emoji);
    }

    /// Message `id` is deleted (announced with MESSAGE_DELETE).
    pub fn delete(&self, channel_id: u64, id: u64) {
        let mut st = self.inner.state();
        st.messages.remove(&id);
        let mut d = json!({ "id": id.to_string(), "channel_id": channel_id.to_string() });
        if self.inner.is_guild_channel_in(&st, channel_id) {
            d["guild_id"] = json!(self.inner.guild_id.to_string());
        }
        dispatch(&mut st, "MESSAGE_DELETE", d);
    }

    /// The message as the fake keeps it (`type` 19 is a reply, 0 a plain message).
    pub fn message(&self, id: u64) -> Option<Value> {
        self.inner.state().messages.get(&id).cloned()
    }

    /// The messages the bot sent after the first `from` (cheap to poll in a long run).
    pub fn sent_since(&self, from: usize) -> Vec<SentMessage> {
        let st = self.inner.state();
        st.sent.get(from..).map(<[SentMessage]>::to_vec).unwrap_or_default()
    }

    /// Every edit the bot made, in order.
    pub fn edits(&self) -> Vec<Edit> {
        self.inner.state().edits.clone()
    }

    /// Every message the bot sent, in order.
    pub fn sent(&self) -> Vec<SentMessage> {
        self.inner.state().sent.clone()
    }

    /// Waits until the bot has sent at least `n` messages (in all), then returns them all; on
    /// timeout returns what there is.
    pub async fn wait_sent(&self, n: usize, timeout: Duration) -> Vec<SentMessage> {
        self.wait_for(timeout, |st| st.sent.len() >= n).await;
        self.sent()
    }

    /// How many times the bot triggered typing in `channel_id`.
    pub fn typing(&self, channel_id: u64) -> usize {
        self.inner.state().typing.get(&channel_id).copied().unwrap_or(0)
    }

    /// Waits until the bot shows it is typing in `channel_id` (a reply under way); false on timeout.
    pub async fn wait_typing(&self, channel_id: u64, timeout: Duration) -> bool {
        self.wait_for(timeout, |st| st.typing.get(&channel_id).is_some_and(|n| *n > 0)).await
    }

    /// (channel id, message id, emoji) of every reaction the bot added.
    pub fn reactions_added_by_bot(&self) -> Vec<(u64, u64, String)> {
        self.inner.state().bot_reactions.clone()
    }

    /// Cuts the current gateway connection without a close frame, like a network failure. The
    /// session stays resumable: serenity reconnects at once and RESUMEs, and the dispatches made
    /// meanwhile are replayed to it. `wait_ready` then waits for the resumed session.
    pub async fn drop_gateway(&self) {
        let mut st = self.inner.state();
        if let Some(conn) = st.current.take() {
            let _ = conn.tx.send(Out::Drop);
        }
    }

    /// Cuts the gateway connection and forgets the session, so the bot's RESUME is refused with
    /// INVALID_SESSION and it must IDENTIFY again (serenity then waits up to 5 s between shard
    /// starts). Dispatches made meanwhile are lost, as on Discord.
    pub async fn invalidate_session(&self) {
        let mut st = self.inner.state();
        st.session_id = String::new();
        if let Some(conn) = st.current.take() {
            let _ = conn.tx.send(Out::Drop);
        }
    }

    /// Websocket connections accepted so far.
    /// From now on, IDENTIFY is answered by closing the websocket with `code` (4004: the
    /// token was refused; 4014: a privileged intent is not allowed).
    pub fn close_on_identify(&self, code: u16) {
        self.inner.state().close_on_identify = Some(code);
    }

    /// The application may not use the Message Content intent (1 << 15), as when its owner has
    /// not turned it on in the developer portal: IDENTIFY asking for it is closed with 4014.
    pub fn refuse_message_content(&self) {
        self.inner.state().refuse_intents = 1 << 15;
    }

    /// The intents of each session the bot opened.
    pub fn identified_intents(&self) -> Vec<u64> {
        self.inner.state().identified_intents.clone()
    }

    /// Closes the gateway connection (4000, "reconnect") and drops every new one, until
    /// [`FakeDiscord::light`]: Discord unreachable, noticed at once rather than at the next
    /// heartbeat (41 s).
    pub async fn go_dark(&self) {
        let mut st = self.inner.state();
        st.dark = true;
        if let Some(conn) = st.current.take() {
            let _ = conn.tx.send(Out::Close(4000));
        }
    }

    /// From now on every REST call is refused with 401, as for a reset token.
    pub fn refuse_token(&self) {
        self.inner.state().refuse_token = true;
    }

    /// Opens a thread under `parent` (announced with THREAD_CREATE); returns its id.
    pub fn thread(&self, parent: u64) -> u64 {
        let mut st = self.inner.state();
        let id = next_id(&mut st);
        st.threads.insert(id, parent);
        drop(st);
        let json = self.inner.channel_json(id).expect("the thread just made");
        dispatch(&mut self.inner.state(), "THREAD_CREATE", json);
        id
    }

    /// Asks clients that connect from now on to heartbeat every `ms` (Discord: 41,250).
    pub fn heartbeat_every(&self, ms: u64) {
        self.inner.state().heartbeat_ms = Some(ms);
    }

    pub fn light(&self) {
        self.inner.state().dark = false;
    }

    pub fn connections(&self) -> usize {
        self.inner.state().connections
    }

    /// HEARTBEATs received (and acknowledged); serenity sends the first one a heartbeat
    /// interval (41.25 s) after IDENTIFY.
    pub fn heartbeats(&self) -> usize {
        self.inner.state().heartbeats
    }

    /// `"METHOD /path"` of every REST call, plus `"GATEWAY IDENTIFY"` / `"GATEWAY RESUME"`.
    pub fn requests(&self) -> Vec<String> {
        self.inner.state().requests.clone()
    }

    /// Every gateway dispatch (op 0 payload) sent so far, to check they all parse.
    pub fn dispatched(&self) -> Vec<Value> {
        self.inner.state().dispatched.clone()
    }

    /// Forgets what a long run has piled up (requests, sent and stored messages, dispatches
    /// but the last 1,000, kept for a resume), so a soak run measures the bot, not the fake.
    pub fn trim(&self) {
        let mut st = self.inner.state();
        st.requests.clear();
        st.sent.clear();
        st.edits.clear();
        st.messages.clear();
        let drop = st.dispatched.len().saturating_sub(1000);
        st.dispatched.drain(..drop);
        st.session_start = st.session_start.saturating_sub(drop);
    }

    async fn wait_for(&self, timeout: Duration, done: impl Fn(&State) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if done(&self.inner.state()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock_or_recover()
    }
}
