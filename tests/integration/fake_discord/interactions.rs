//! Application commands and interactions, as Discord runs them: the bot registers its slash
//! commands with a bulk overwrite (PUT replaces the whole set of a guild or of the
//! application); a user's command arrives as INTERACTION_CREATE; the bot answers through the
//! interaction's callback (here: deferred) and then edits the original response and posts
//! follow-ups through the webhook routes.

use super::rest::not_found;
use super::*;

/// What the fake keeps of commands and interactions.
#[derive(Default)]
pub(super) struct Slash {
    /// The registered commands: `None` the application's (global), `Some(guild)` a guild's.
    commands: HashMap<Option<u64>, Vec<Value>>,
    /// How many bulk overwrites each scope got.
    overwrites: HashMap<Option<u64>, usize>,
    /// token -> what the bot did with that interaction, in order.
    answers: HashMap<String, Vec<Answer>>,
    /// token -> the channel the interaction came from.
    channels: HashMap<String, u64>,
    /// token -> the id of its original response (one id through its edits).
    originals: HashMap<String, u64>,
}

/// One thing the bot did with an interaction.
#[derive(Clone, Debug)]
pub struct Answer {
    /// `callback` (its `type`: 4 a message, 5 deferred, 6 a click acknowledged), `edit` (of the original response)
    /// or `followup`.
    pub kind: &'static str,
    /// The request body as serenity sent it.
    pub body: Value,
}

impl Answer {
    /// The callback's or message's flags have EPHEMERAL (1 << 6): only the asker sees it.
    pub fn ephemeral(&self) -> bool {
        let flags = if self.kind == "callback" { &self.body["data"]["flags"] } else { &self.body["flags"] };
        flags.as_u64().is_some_and(|f| f & 64 != 0)
    }

    pub fn content(&self) -> &str {
        self.body["content"].as_str().unwrap_or("")
    }
}

impl FakeDiscord {
    /// `user` runs `/name` with `options` (`[{ "name", "type", "value" }]`, as Discord sends
    /// them) in `channel_id` (a guild channel or a DM channel); returns the interaction token.
    pub fn slash(&self, channel_id: u64, user: &FakeUser, name: &str, options: Value) -> String {
        let mut st = self.inner.state();
        st.users.insert(user.id, user.clone());
        let id = next_id(&mut st);
        let token = format!("token-{id}");
        st.slash.channels.insert(token.clone(), channel_id);
        let command_id = st.slash.commands.values().flatten().find(|c| c["name"] == name).map_or(json!("1"), |c| c["id"].clone());
        let mut d = json!({
            "id": id.to_string(), "application_id": self.inner.bot.id.to_string(), "type": 2,
            "data": { "id": command_id, "name": name, "type": 1, "options": options },
            "channel_id": channel_id.to_string(), "token": token, "version": 1,
            "app_permissions": "0", "locale": "en-US", "entitlements": [], "attachment_size_limit": 10_485_760,
        });
        self.inner.who_asked(&st, &mut d, channel_id, user, id);
        dispatch(&mut st, "INTERACTION_CREATE", d);
        token
    }

    /// `user` clicks the button `custom_id` under the bot's message `message_id`; returns the
    /// interaction token (its answers: [`FakeDiscord::answers`]).
    pub fn click(&self, channel_id: u64, message_id: u64, user: &FakeUser, custom_id: &str) -> String {
        let mut st = self.inner.state();
        st.users.insert(user.id, user.clone());
        let Some(message) = st.messages.get(&message_id).cloned() else { panic!("no message {message_id} to click on") };
        let id = next_id(&mut st);
        let token = format!("token-{id}");
        st.slash.channels.insert(token.clone(), channel_id);
        let mut d = json!({
            "id": id.to_string(), "application_id": self.inner.bot.id.to_string(), "type": 3,
            "data": { "custom_id": custom_id, "component_type": 2 },
            "channel_id": channel_id.to_string(), "token": token, "version": 1, "message": message,
            "app_permissions": "0", "locale": "en-US", "entitlements": [], "attachment_size_limit": 10_485_760,
        });
        self.inner.who_asked(&st, &mut d, channel_id, user, id);
        dispatch(&mut st, "INTERACTION_CREATE", d);
        token
    }

    /// The custom ids of the buttons message `message_id` shows now.
    pub fn buttons(&self, message_id: u64) -> Vec<String> {
        let st = self.inner.state();
        let Some(message) = st.messages.get(&message_id) else { return Vec::new() };
        let rows = message["components"].as_array().cloned().unwrap_or_default();
        rows.iter()
            .flat_map(|row| row["components"].as_array().cloned().unwrap_or_default())
            .filter_map(|b| b["custom_id"].as_str().map(String::from))
            .collect()
    }

    /// What the bot did with the interaction `token` so far.
    pub fn answers(&self, token: &str) -> Vec<Answer> {
        self.inner.state().slash.answers.get(token).cloned().unwrap_or_default()
    }

    /// Waits until the bot has edited in (or sent) a first answer to `token`; the answers then.
    pub async fn wait_answer(&self, token: &str, timeout: Duration) -> Vec<Answer> {
        let answered =
            |st: &State| st.slash.answers.get(token).is_some_and(|a| a.iter().any(|a| a.kind != "callback" || a.body["type"] == 4));
        self.wait_for(timeout, answered).await;
        self.answers(token)
    }

    /// The registered commands of `guild` (`None`: the application's global ones).
    pub fn commands(&self, guild: Option<u64>) -> Vec<Value> {
        self.inner.state().slash.commands.get(&guild).cloned().unwrap_or_default()
    }

    /// How many times the bot replaced the command set of `guild` (`None`: global).
    pub fn overwrites(&self, guild: Option<u64>) -> usize {
        self.inner.state().slash.overwrites.get(&guild).copied().unwrap_or(0)
    }

    /// Waits until the command sets of the guild and of the application were each replaced
    /// `n` times in all.
    pub async fn wait_overwrites(&self, n: usize, timeout: Duration) -> bool {
        let guild = Some(self.inner.guild_id);
        self.wait_for(timeout, |st| [guild, None].iter().all(|s| st.slash.overwrites.get(s).copied().unwrap_or(0) >= n)).await
    }

    /// Commands left registered from before (as a bot's older version would leave them).
    pub fn register_before(&self, guild: Option<u64>, names: &[&str]) {
        let mut st = self.inner.state();
        let commands: Vec<Value> = names.iter().map(|n| json!({ "name": n, "description": "an old command", "type": 1 })).collect();
        let commands = with_ids(&mut st, self.inner.bot.id, guild, commands);
        st.slash.commands.insert(guild, commands);
    }
}

/// The commands as Discord stores them: each with an id, the application and its guild.
fn with_ids(st: &mut State, application: u64, guild: Option<u64>, commands: Vec<Value>) -> Vec<Value> {
    commands
        .into_iter()
        .map(|mut c| {
            c["id"] = json!(next_id(st).to_string());
            c["application_id"] = json!(application.to_string());
            c["version"] = json!("1");
            c["type"] = c.get("type").cloned().unwrap_or(json!(1));
            if let Some(guild) = guild {
                c["guild_id"] = json!(guild.to_string());
            }
            c
        })
        .collect()
}

impl Inner {
    /// An interaction in a server carries the member, in a DM the user.
    fn who_asked(&self, st: &State, d: &mut Value, channel_id: u64, user: &FakeUser, id: u64) {
        if self.is_guild_channel_in(st, channel_id) {
            let timestamp = iso8601((id >> 22) + DISCORD_EPOCH_MS);
            let mut member = member_json(&timestamp);
            member["user"] = user_json(user);
            member["permissions"] = json!(EVERYONE_PERMISSIONS.to_string());
            d["guild_id"] = json!(self.guild_id.to_string());
            d["guild_locale"] = json!("en-US");
            d["member"] = member;
        } else {
            d["user"] = user_json(user);
        }
    }

    /// The routes of this part of the API; `None` for any other.
    pub(super) fn route_interactions(&self, method: &str, segments: &[&str], body: Value) -> Option<(StatusCode, Value)> {
        let scope = match segments {
            ["applications", _, "commands"] => Some(None),
            ["applications", _, "guilds", guild, "commands"] => Some(Some(parse_id(guild))),
            _ => None,
        };
        if let Some(scope) = scope {
            let mut st = self.state();
            return Some(match method {
                "PUT" => {
                    // A bulk overwrite: the new set replaces the old one whole.
                    let commands = with_ids(&mut st, self.bot.id, scope, body.as_array().cloned().unwrap_or_default());
                    *st.slash.overwrites.entry(scope).or_default() += 1;
                    st.slash.commands.insert(scope, commands.clone());
                    (StatusCode::OK, Value::Array(commands))
                }
                "GET" => (StatusCode::OK, Value::Array(st.slash.commands.get(&scope).cloned().unwrap_or_default())),
                _ => not_found(),
            });
        }
        match (method, segments) {
            ("POST", ["interactions", _, token, "callback"]) => {
                let mut st = self.state();
                let known = st.slash.channels.contains_key(*token);
                if !known {
                    return Some((StatusCode::NOT_FOUND, json!({ "message": "Unknown interaction", "code": 10062 })));
                }
                st.slash.answers.entry(token.to_string()).or_default().push(Answer { kind: "callback", body });
                Some((StatusCode::NO_CONTENT, Value::Null))
            }
            ("PATCH", ["webhooks", _, token, "messages", "@original"]) => Some(self.webhook_message(token, "edit", body)),
            ("POST", ["webhooks", _, token]) => Some(self.webhook_message(token, "followup", body)),
            _ => None,
        }
    }

    /// The original response edited, or a follow-up posted, as a message by the bot.
    fn webhook_message(&self, token: &str, kind: &'static str, body: Value) -> (StatusCode, Value) {
        let mut st = self.state();
        let Some(&channel_id) = st.slash.channels.get(token) else { return not_found() };
        let deferred = st.slash.answers.get(token).is_some_and(|a| a.iter().any(|a| a.kind == "callback"));
        if !deferred {
            return (StatusCode::NOT_FOUND, json!({ "message": "Unknown Webhook", "code": 10015 }));
        }
        // The original response keeps one id through its edits; each follow-up gets its own.
        let id = match (kind, st.slash.originals.get(token)) {
            ("edit", Some(&id)) => id,
            _ => next_id(&mut st),
        };
        if kind == "edit" {
            st.slash.originals.insert(token.to_string(), id);
        }
        let content = body["content"].as_str().unwrap_or("").to_string();
        let message =
            self.message_json(&st, id, NewMessage { channel_id, author: &self.bot, content: &content, mentions: vec![], reply_to: None });
        st.messages.insert(id, message.clone());
        st.slash.answers.entry(token.to_string()).or_default().push(Answer { kind, body });
        (StatusCode::OK, message)
    }
}
