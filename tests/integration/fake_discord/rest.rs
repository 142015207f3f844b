//! The REST API the bot calls: messages, reactions, channels, typing.

use super::*;

/// A message to create, as a user or the bot writes it.
pub(super) struct NewMessage<'a> {
    pub channel_id: u64,
    pub author: &'a FakeUser,
    pub content: &'a str,
    pub mentions: Vec<Value>,
    pub reply_to: Option<u64>,
}

impl Inner {
    pub(super) fn is_guild_channel(&self, channel_id: u64) -> bool {
        self.is_guild_channel_in(&self.state(), channel_id)
    }

    /// For callers already holding the state (its lock is not reentrant).
    pub(super) fn is_guild_channel_in(&self, st: &State, channel_id: u64) -> bool {
        self.channel_ids.contains(&channel_id) || st.threads.contains_key(&channel_id)
    }

    pub(super) fn dm_channel(&self, user: &FakeUser) -> u64 {
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
    pub(super) fn post_message(&self, new: NewMessage<'_>) -> u64 {
        let mut st = self.state();
        st.users.insert(new.author.id, new.author.clone());
        let id = next_id(&mut st);
        let message = self.message_json(&st, id, new);
        st.messages.insert(id, message.clone());
        let message = self.as_the_bot_may_see(&st, message);
        dispatch(&mut st, "MESSAGE_CREATE", message);
        id
    }

    /// Without the Message Content intent Discord blanks a server message's content, unless
    /// it mentions the bot or replies to it (DMs keep theirs).
    fn as_the_bot_may_see(&self, st: &State, mut message: Value) -> Value {
        let with_content = st.identified_intents.last().is_none_or(|i| i & (1 << 15) != 0);
        let bot = self.bot.id.to_string();
        let mentioned = message["mentions"].as_array().is_some_and(|m| m.iter().any(|u| u["id"] == bot.as_str()));
        let replied = message["referenced_message"]["author"]["id"] == bot.as_str();
        if !with_content && message.get("guild_id").is_some() && !mentioned && !replied {
            message["content"] = json!("");
        }
        message
    }

    pub(super) fn message_json(&self, st: &State, id: u64, new: NewMessage<'_>) -> Value {
        let NewMessage { channel_id, author, content, mentions, reply_to } = new;
        let timestamp = iso8601((id >> 22) + DISCORD_EPOCH_MS);
        let mut m = json!({
            "id": id.to_string(), "channel_id": channel_id.to_string(), "author": user_json(author),
            "content": content, "timestamp": timestamp, "edited_timestamp": null, "tts": false,
            "mention_everyone": false, "mentions": mentions, "mention_roles": [], "attachments": [],
            "embeds": [], "components": [], "pinned": false, "flags": 0,
            // 19 is a reply, 0 a plain message.
            "type": if reply_to.is_some() { 19 } else { 0 },
        });
        if self.is_guild_channel_in(st, channel_id) {
            m["guild_id"] = json!(self.guild_id.to_string());
            m["member"] = member_json(&timestamp);
        }
        if let Some(reference) = reply_to {
            m["message_reference"] = json!({
                "type": 0, "message_id": reference.to_string(), "channel_id": channel_id.to_string(),
            });
            if self.is_guild_channel_in(st, channel_id) {
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

    /// The bot edits its message: the stored copy and the `sent` record show the new text
    /// (what a user sees now), the edit is kept in order, and MESSAGE_UPDATE is dispatched.
    pub(super) fn edit_message(&self, channel_id: u64, message_id: u64, body: Value) -> (StatusCode, Value) {
        let mut st = self.state();
        let Some(message) = st.messages.get_mut(&message_id) else { return not_found() };
        if let Some(content) = body.get("content") {
            message["content"] = content.clone();
            message["edited_timestamp"] = json!(iso8601(now_ms()));
        }
        if let Some(components) = body.get("components") {
            message["components"] = components.clone();
        }
        let message = message.clone();
        if let Some(sent) = st.sent.iter_mut().find(|s| s.message_id == message_id) {
            sent.body["content"] = message["content"].clone();
            sent.body["components"] = message["components"].clone();
        }
        st.edits.push(Edit { channel_id, message_id, body, received: std::time::Instant::now() });
        dispatch(&mut st, "MESSAGE_UPDATE", message.clone());
        (StatusCode::OK, message)
    }

    pub(super) fn reaction(&self, add: bool, channel_id: u64, message_id: u64, user: &FakeUser, emoji: &str) {
        let mut st = self.state();
        let mut d = json!({
            "user_id": user.id.to_string(), "channel_id": channel_id.to_string(),
            "message_id": message_id.to_string(), "emoji": emoji_json(emoji),
            "burst": false, "burst_colors": [], "type": 0,
        });
        if self.is_guild_channel_in(&st, channel_id) {
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

    pub(super) fn channel_json(&self, channel_id: u64) -> Option<Value> {
        if let Some(i) = self.channel_ids.iter().position(|&c| c == channel_id) {
            return Some(json!({
                "id": channel_id.to_string(), "type": 0, "guild_id": self.guild_id.to_string(),
                "name": format!("channel-{i}"), "position": i, "permission_overwrites": [],
                "nsfw": false, "topic": null, "last_message_id": null, "parent_id": null,
            }));
        }
        let st = self.state();
        if let Some(parent) = st.threads.get(&channel_id) {
            return Some(json!({
                "id": channel_id.to_string(), "type": 11, "guild_id": self.guild_id.to_string(),
                "name": format!("thread-{channel_id}"), "parent_id": parent.to_string(), "owner_id": self.owner.id.to_string(),
                "last_message_id": null, "message_count": 0, "member_count": 1, "rate_limit_per_user": 0,
                "thread_metadata": { "archived": false, "auto_archive_duration": 1440, "archive_timestamp": iso8601(now_ms()), "locked": false },
            }));
        }
        let (user, _) = st.dm_channels.iter().find(|(_, &c)| c == channel_id)?;
        Some(dm_channel_json(channel_id, &st.users[user]))
    }

    // ---- REST ----

    /// Answers one REST call: (status, JSON body; `Null` means no body).
    pub(super) fn route(&self, method: &str, path: &str, query: &str, body: Value) -> (StatusCode, Value) {
        let segments: Vec<&str> = path.trim_start_matches("/api/v10/").split('/').collect();
        if method == "GET" {
            if let Some(answer) = self.guild_listing(&segments) {
                return answer;
            }
        }
        if matches!(segments.first(), Some(&("applications" | "interactions" | "webhooks"))) {
            return self.route_interactions(method, &segments, body).unwrap_or_else(not_found);
        }
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
                let mut reply_to = id_of(&body["message_reference"]["message_id"]);
                if reply_to.is_some_and(|r| !self.state().messages.contains_key(&r)) {
                    // As Discord: a reply to an unknown message is refused, unless the sender
                    // said `fail_if_not_exists: false`, and then it is sent as a plain message.
                    if body["message_reference"]["fail_if_not_exists"] != json!(false) {
                        let why = json!([{ "code": "REPLIES_UNKNOWN_MESSAGE", "message": "Unknown message" }]);
                        let errors = json!({ "message_reference": { "_errors": why } });
                        return (StatusCode::BAD_REQUEST, json!({ "message": "Invalid Form Body", "code": 50035, "errors": errors }));
                    }
                    reply_to = None;
                }
                let id = self.post_message(NewMessage { channel_id, author: &self.bot, content, mentions: vec![], reply_to });
                let mut st = self.state();
                if let (Some(components), Some(message)) = (body.get("components"), st.messages.get_mut(&id)) {
                    message["components"] = components.clone();
                }
                st.sent.push(SentMessage { channel_id, message_id: id, body, received: std::time::Instant::now() });
                ok(st.messages[&id].clone())
            }
            ("PATCH", ["channels", channel, "messages", message]) => self.edit_message(parse_id(channel), parse_id(message), body),
            ("DELETE", ["channels", _, "messages", message]) => {
                self.state().messages.remove(&parse_id(message));
                no_content
            }
            ("GET", ["channels", channel, "messages"]) => self.list_messages(parse_id(channel), query),
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

pub(super) async fn serve_http(inner: Arc<Inner>, listener: TcpListener) {
    while let Ok((tcp, _)) = listener.accept().await {
        let inner = inner.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle_http(inner.clone(), req));
            // reqwest keeps connections alive; hyper serves them until the client hangs up.
            let _ = http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await;
        });
    }
}

pub(super) async fn handle_http(inner: Arc<Inner>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let bytes = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    inner.state().requests.push(format!("{method} {path}"));
    let refused = inner.state().refuse_token;
    if !refused {
        if let Some(too_many) = inner.listing_refusal(&method, &path) {
            return Ok(too_many);
        }
        if path.ends_with("/messages") && method == "GET" {
            tokio::time::sleep(inner.page_delay()).await;
        }
    }
    let (status, value) = match refused {
        true => (StatusCode::UNAUTHORIZED, json!({ "message": "401: Unauthorized", "code": 0 })),
        false => inner.route(&method, &path, &query, body),
    };
    let response = Response::builder().status(status);
    Ok(if value.is_null() {
        response.body(Full::default())
    } else {
        response.header("content-type", "application/json").body(Full::new(Bytes::from(value.to_string())))
    }
    .unwrap())
}

pub(super) fn not_found() -> (StatusCode, Value) {
    (StatusCode::NOT_FOUND, json!({ "message": "Unknown (fake Discord)", "code": 10000 }))
}
