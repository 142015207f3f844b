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
//! - messages and reactions the bot makes over REST come back to it as gateway dispatches.
//!
//! Payloads are sent as uncompressed text frames, which serenity accepts although its IDENTIFY
//! asks for `compress: true`.
#![allow(dead_code)] // each test binary uses a different part of it

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
        self.inner.post_message(channel_id, author, content, mentions, reply_to)
    }

    /// `author` says `content` to the bot in their DM channel (no `guild_id`); returns its id.
    pub async fn dm(&self, author: &FakeUser, content: &str) -> u64 {
        let channel_id = self.inner.dm_channel(author);
        self.inner.post_message(channel_id, author, content, vec![], None)
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

// ---- the gateway ----

async fn serve_gateway(inner: Arc<Inner>, listener: TcpListener) {
    while let Ok((tcp, _)) = listener.accept().await {
        tokio::spawn(gateway_connection(inner.clone(), tcp));
    }
}

async fn gateway_connection(inner: Arc<Inner>, tcp: TcpStream) {
    // serenity connects to `{url}?v=10` and needs no particular reply headers.
    let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else { return };
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let id = {
        let mut st = inner.state();
        st.connections += 1;
        // A newer connection replaces the old one as the dispatch target.
        st.current = Some(Conn { id: st.connections, tx: tx.clone(), live: false });
        st.connections
    };
    let _ = tx.send(Out::Frame(json!({ "op": 10, "d": { "heartbeat_interval": HEARTBEAT_MS } })));
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(Out::Frame(v)) => {
                    if sink.send(WsMessage::Text(v.to_string())).await.is_err() {
                        break;
                    }
                }
                Some(Out::Drop) | None => break,
            },
            incoming = stream.next() => match incoming {
                Some(Ok(WsMessage::Text(text))) => inner.on_gateway_payload(id, &text),
                Some(Ok(WsMessage::Close(_))) => {
                    // Flushes tungstenite's queued close reply; serenity waits for it on shutdown.
                    let _ = sink.close().await;
                    break;
                }
                Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
    let mut st = inner.state();
    if st.current.as_ref().is_some_and(|c| c.id == id) {
        st.current = None;
    }
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock_or_recover()
    }

    fn on_gateway_payload(&self, conn_id: usize, text: &str) {
        let payload: Value = serde_json::from_str(text).unwrap_or_default();
        let mut st = self.state();
        // Only the newest connection speaks for the bot.
        let Some(tx) = st.current.as_ref().filter(|c| c.id == conn_id).map(|c| c.tx.clone()) else { return };
        match payload["op"].as_u64() {
            // HEARTBEAT
            Some(1) => {
                st.heartbeats += 1;
                let _ = tx.send(Out::Frame(json!({ "op": 11 })));
            }
            // IDENTIFY: a new session, READY then the guild.
            Some(2) => {
                st.current.as_mut().unwrap().live = true;
                st.requests.push("GATEWAY IDENTIFY".into());
                st.session_id = format!("fake-session-{conn_id}");
                st.seq = 0;
                st.session_start = st.dispatched.len();
                let ready = self.ready_json(&st.session_id);
                dispatch(&mut st, "READY", ready);
                dispatch(&mut st, "GUILD_CREATE", self.guild_json());
            }
            // RESUME: replay what the bot missed, then RESUMED.
            Some(6) => {
                let d = &payload["d"];
                if st.session_id.is_empty() || d["session_id"].as_str() != Some(st.session_id.as_str()) {
                    st.requests.push("GATEWAY RESUME (refused)".into());
                    let _ = tx.send(Out::Frame(json!({ "op": 9, "d": false })));
                    return;
                }
                st.current.as_mut().unwrap().live = true;
                st.requests.push("GATEWAY RESUME".into());
                let seen = d["seq"].as_u64().unwrap_or(0);
                for p in &st.dispatched[st.session_start..] {
                    if p["s"].as_u64().unwrap_or(0) > seen {
                        let _ = tx.send(Out::Frame(p.clone()));
                    }
                }
                dispatch(&mut st, "RESUMED", json!({}));
            }
            // PRESENCE_UPDATE, REQUEST_GUILD_MEMBERS, ...: nothing to do.
            _ => {}
        }
    }

    fn ready_json(&self, session_id: &str) -> Value {
        json!({
            "v": 10,
            "user": user_json(&self.bot),
            "guilds": [{ "id": self.guild_id.to_string(), "unavailable": true }],
            "session_id": session_id,
            "resume_gateway_url": format!("ws://{}", self.ws_addr),
            "shard": [0, 1],
            "application": { "id": self.bot.id.to_string(), "flags": 0 },
        })
    }

    /// GUILD_CREATE: serenity rejects the whole guild if a required field is missing, and
    /// silently skips a channel that does not parse.
    fn guild_json(&self) -> Value {
        let joined = iso8601(now_ms());
        let gid = self.guild_id.to_string();
        let channels: Vec<Value> = self
            .channel_ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                json!({
                    "id": id.to_string(), "type": 0, "guild_id": gid, "name": format!("channel-{i}"),
                    "position": i, "permission_overwrites": [], "nsfw": false, "topic": null,
                    "last_message_id": null, "parent_id": null, "rate_limit_per_user": 0,
                })
            })
            .collect();
        let members: Vec<Value> = [&self.bot, &self.owner]
            .into_iter()
            .map(|u| {
                let mut m = member_json(&joined);
                m["user"] = user_json(u);
                m
            })
            .collect();
        json!({
            "id": gid, "name": "Fake Guild", "icon": null, "splash": null, "discovery_splash": null,
            "owner_id": self.owner.id.to_string(), "afk_channel_id": null, "afk_timeout": 300,
            "verification_level": 0, "default_message_notifications": 1, "explicit_content_filter": 0,
            "roles": [{
                // @everyone has the guild's id.
                "id": gid, "name": "@everyone", "color": 0,
                "colors": { "primary_color": 0, "secondary_color": null, "tertiary_color": null },
                "hoist": false, "managed": false, "mentionable": false, "icon": null,
                "unicode_emoji": null, "position": 0, "flags": 0,
                "permissions": EVERYONE_PERMISSIONS.to_string(),
            }],
            "emojis": [], "stickers": [], "features": [], "mfa_level": 0, "application_id": null,
            "system_channel_id": null, "system_channel_flags": 0, "rules_channel_id": null,
            "vanity_url_code": null, "description": null, "banner": null, "premium_tier": 0,
            "premium_subscription_count": 0, "preferred_locale": "en-US",
            "public_updates_channel_id": null, "nsfw_level": 0, "premium_progress_bar_enabled": false,
            "joined_at": joined, "large": false, "unavailable": false,
            "member_count": members.len(), "voice_states": [], "members": members,
            "channels": channels, "threads": [], "presences": [], "stage_instances": [],
            "guild_scheduled_events": [],
        })
    }

    // ---- messages and reactions ----

    fn is_guild_channel(&self, channel_id: u64) -> bool {
        self.channel_ids.contains(&channel_id)
    }

    fn dm_channel(&self, user: &FakeUser) -> u64 {
        let mut st = self.state();
        st.users.insert(user.id, user.clone());
        if let Some(&id) = st.dm_channels.get(&user.id) {
            return id;
        }
        let id = next_id(&mut st);
        st.dm_channels.insert(user.id, id);
        id
    }

    /// Creates a message, remembers it and dispatches MESSAGE_CREATE; returns its id.
    fn post_message(&self, channel_id: u64, author: &FakeUser, content: &str, mentions: Vec<Value>, reply_to: Option<u64>) -> u64 {
        let mut st = self.state();
        st.users.insert(author.id, author.clone());
        let id = next_id(&mut st);
        let message = self.message_json(&st, id, channel_id, author, content, mentions, reply_to);
        st.messages.insert(id, message.clone());
        dispatch(&mut st, "MESSAGE_CREATE", message);
        id
    }

    #[allow(clippy::too_many_arguments)]
    fn message_json(
        &self,
        st: &State,
        id: u64,
        channel_id: u64,
        author: &FakeUser,
        content: &str,
        mentions: Vec<Value>,
        reply_to: Option<u64>,
    ) -> Value {
        let timestamp = iso8601((id >> 22) + DISCORD_EPOCH_MS);
        let mut m = json!({
            "id": id.to_string(), "channel_id": channel_id.to_string(), "author": user_json(author),
            "content": content, "timestamp": timestamp, "edited_timestamp": null, "tts": false,
            "mention_everyone": false, "mentions": mentions, "mention_roles": [], "attachments": [],
            "embeds": [], "components": [], "pinned": false, "flags": 0,
            // 19 is a reply, 0 a plain message.
            "type": if reply_to.is_some() { 19 } else { 0 },
        });
        if self.is_guild_channel(channel_id) {
            m["guild_id"] = json!(self.guild_id.to_string());
            m["member"] = member_json(&timestamp);
        }
        if let Some(reference) = reply_to {
            m["message_reference"] = json!({
                "type": 0, "message_id": reference.to_string(), "channel_id": channel_id.to_string(),
            });
            if self.is_guild_channel(channel_id) {
                m["message_reference"]["guild_id"] = json!(self.guild_id.to_string());
            }
            // Discord nests one level only.
            let referenced = st.messages.get(&reference).cloned().map(|mut r| {
                r.as_object_mut().unwrap().remove("referenced_message");
                r
            });
            m["referenced_message"] = referenced.unwrap_or(Value::Null);
        }
        m
    }

    fn reaction(&self, add: bool, channel_id: u64, message_id: u64, user: &FakeUser, emoji: &str) {
        let mut st = self.state();
        let mut d = json!({
            "user_id": user.id.to_string(), "channel_id": channel_id.to_string(),
            "message_id": message_id.to_string(), "emoji": emoji_json(emoji),
            "burst": false, "burst_colors": [], "type": 0,
        });
        if self.is_guild_channel(channel_id) {
            d["guild_id"] = json!(self.guild_id.to_string());
            if add {
                let mut member = member_json(&iso8601(now_ms()));
                member["user"] = user_json(user);
                d["member"] = member;
            }
        }
        if let Some(author) = st.messages.get(&message_id).map(|m| m["author"]["id"].clone()).filter(|_| add) {
            d["message_author_id"] = author;
        }
        let event = if add { "MESSAGE_REACTION_ADD" } else { "MESSAGE_REACTION_REMOVE" };
        dispatch(&mut st, event, d);
    }

    fn channel_json(&self, channel_id: u64) -> Option<Value> {
        if let Some(i) = self.channel_ids.iter().position(|&c| c == channel_id) {
            return Some(json!({
                "id": channel_id.to_string(), "type": 0, "guild_id": self.guild_id.to_string(),
                "name": format!("channel-{i}"), "position": i, "permission_overwrites": [],
                "nsfw": false, "topic": null, "last_message_id": null, "parent_id": null,
            }));
        }
        let st = self.state();
        let (user, _) = st.dm_channels.iter().find(|(_, &c)| c == channel_id)?;
        Some(dm_channel_json(channel_id, &st.users[user]))
    }

    // ---- REST ----

    /// Answers one REST call: (status, JSON body; `Null` means no body).
    fn route(&self, method: &str, path: &str, body: Value) -> (StatusCode, Value) {
        let segments: Vec<&str> = path.trim_start_matches("/api/v10/").split('/').collect();
        let ok = |v: Value| (StatusCode::OK, v);
        let no_content = (StatusCode::NO_CONTENT, Value::Null);
        let gateway_url = format!("ws://{}", self.ws_addr);
        match (method, segments.as_slice()) {
            ("GET", ["gateway"]) => ok(json!({ "url": gateway_url })),
            ("GET", ["gateway", "bot"]) => ok(json!({
                "url": gateway_url, "shards": 1,
                "session_start_limit": { "total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1 },
            })),
            ("GET", ["users", "@me"]) => ok(user_json(&self.bot)),
            ("GET", ["oauth2", "applications", "@me"]) => ok(json!({
                "id": self.bot.id.to_string(), "name": self.bot.name, "icon": null, "description": "",
                "bot_public": false, "bot_require_code_grant": false, "verify_key": "00",
                "owner": user_json(&self.owner), "team": null, "flags": 0,
            })),
            ("POST", ["users", "@me", "channels"]) => {
                let Some(recipient) = id_of(&body["recipient_id"]) else { return not_found() };
                let user = self.state().users.get(&recipient).cloned();
                let user = user.unwrap_or_else(|| FakeUser::new(recipient, &format!("user{recipient}")));
                ok(dm_channel_json(self.dm_channel(&user), &user))
            }
            ("GET", ["channels", channel]) => match self.channel_json(parse_id(channel)) {
                Some(channel) => ok(channel),
                None => not_found(),
            },
            ("POST", ["channels", channel, "messages"]) => {
                let channel_id = parse_id(channel);
                let content = body["content"].as_str().unwrap_or("");
                let reply_to = id_of(&body["message_reference"]["message_id"]);
                let id = self.post_message(channel_id, &self.bot, content, vec![], reply_to);
                let mut st = self.state();
                st.sent.push(SentMessage { channel_id, message_id: id, body });
                ok(st.messages[&id].clone())
            }
            ("GET", ["channels", _, "messages", message]) => match self.state().messages.get(&parse_id(message)) {
                Some(m) => ok(m.clone()),
                None => not_found(),
            },
            ("POST", ["channels", channel, "typing"]) => {
                *self.state().typing.entry(parse_id(channel)).or_default() += 1;
                no_content
            }
            (method @ ("PUT" | "DELETE"), ["channels", channel, "messages", message, "reactions", emoji, "@me"]) => {
                let (channel_id, message_id, emoji) = (parse_id(channel), parse_id(message), percent_decode(emoji));
                if method == "PUT" {
                    self.state().bot_reactions.push((channel_id, message_id, emoji.clone()));
                }
                self.reaction(method == "PUT", channel_id, message_id, &self.bot, &emoji);
                no_content
            }
            _ => not_found(),
        }
    }
}

/// Sends a dispatch (op 0) with the next sequence number to the live connection, if any, and
/// keeps it for replay on RESUME. Called with the state locked, so the order is the send order.
fn dispatch(st: &mut State, event: &str, d: Value) {
    st.seq += 1;
    let payload = json!({ "op": 0, "t": event, "s": st.seq, "d": d });
    if let Some(conn) = st.current.as_ref().filter(|c| c.live) {
        let _ = conn.tx.send(Out::Frame(payload.clone()));
    }
    st.dispatched.push(payload);
}

async fn serve_http(inner: Arc<Inner>, listener: TcpListener) {
    while let Ok((tcp, _)) = listener.accept().await {
        let inner = inner.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle_http(inner.clone(), req));
            // reqwest keeps connections alive; hyper serves them until the client hangs up.
            let _ = http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await;
        });
    }
}

async fn handle_http(inner: Arc<Inner>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let bytes = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    inner.state().requests.push(format!("{method} {path}"));
    let (status, value) = inner.route(&method, &path, body);
    let response = Response::builder().status(status);
    Ok(if value.is_null() {
        response.body(Full::default())
    } else {
        response.header("content-type", "application/json").body(Full::new(Bytes::from(value.to_string())))
    }
    .unwrap())
}

fn not_found() -> (StatusCode, Value) {
    (StatusCode::NOT_FOUND, json!({ "message": "Unknown (fake Discord)", "code": 10000 }))
}

// ---- JSON pieces and small helpers ----

fn user_json(user: &FakeUser) -> Value {
    json!({
        "id": user.id.to_string(), "username": user.name, "global_name": null,
        "discriminator": "0", "avatar": null, "bot": user.bot,
    })
}

/// A guild member without `user` (as in MESSAGE_CREATE's `member`); add it where needed.
fn member_json(joined_at: &str) -> Value {
    json!({ "roles": [], "joined_at": joined_at, "deaf": false, "mute": false, "flags": 0, "nick": null })
}

fn dm_channel_json(channel_id: u64, user: &FakeUser) -> Value {
    json!({ "id": channel_id.to_string(), "type": 1, "last_message_id": null, "recipients": [user_json(user)] })
}

/// `"👍"` is a unicode emoji; `"name:123"` a custom one (how serenity writes it in the URL).
fn emoji_json(emoji: &str) -> Value {
    match emoji.split_once(':') {
        Some((name, id)) if id.parse::<u64>().is_ok() => json!({ "id": id, "name": name, "animated": false }),
        _ => json!({ "id": null, "name": emoji }),
    }
}

/// Snowflakes arrive as strings (serenity writes them so) or numbers.
fn id_of(v: &Value) -> Option<u64> {
    v.as_str().and_then(|s| s.parse().ok()).or_else(|| v.as_u64())
}

fn parse_id(segment: &str) -> u64 {
    segment.parse().unwrap_or(0)
}

/// A new snowflake: the current time in its top bits like Discord's, always increasing.
fn next_id(st: &mut State) -> u64 {
    st.last_id = ((now_ms() - DISCORD_EPOCH_MS) << 22).max(st.last_id + 1);
    st.last_id
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// RFC 3339 in UTC from Unix milliseconds (days to civil date after H. Hinnant).
fn iso8601(ms: u64) -> String {
    let (days, secs) = ((ms / 86_400_000) as i64, ms / 1000 % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{:03}000+00:00", ms % 1000)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn helpers() {
    assert_eq!(iso8601(0), "1970-01-01T00:00:00.000000+00:00");
    assert_eq!(iso8601(1_709_210_096_789), "2024-02-29T12:34:56.789000+00:00");
    assert_eq!(percent_decode("%F0%9F%91%8D"), "👍");
    assert_eq!(percent_decode("custom%3A123"), "custom:123");
}
