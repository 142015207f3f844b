//! The history a fetch reads: messages written before anyone listened (no gateway event),
//! listed a page at a time as Discord lists them, and the ways Discord says no: 429 with
//! `retry_after`, 403 on a channel the bot may not read.

use super::*;

/// A message already in a channel's history.
pub struct Historic<'a> {
    pub author: &'a FakeUser,
    pub content: &'a str,
    /// Discord's message type: 0 a message, 7 a join, 6 a pin...
    pub kind: u8,
    pub reactions: Vec<(&'a str, u32)>,
    /// Its own id and time (an export's), or the next ones.
    pub id: Option<u64>,
    pub at_ms: Option<u64>,
    pub reply_to: Option<u64>,
}

impl<'a> Historic<'a> {
    pub fn says(author: &'a FakeUser, content: &'a str) -> Self {
        Historic { author, content, kind: 0, reactions: Vec::new(), id: None, at_ms: None, reply_to: None }
    }
}

/// How the fake answers the history listing.
#[derive(Default)]
pub(super) struct Listing {
    /// The next this many listings get 429 with this `retry_after` (seconds).
    rate_limited: usize,
    retry_after: f64,
    forbidden: std::collections::HashSet<u64>,
    /// Each page waits this long before it is answered.
    page_delay_ms: u64,
    pub(super) pages: usize,
}

impl FakeDiscord {
    /// Adds a message to `channel_id`'s history; returns its id.
    pub fn add_history(&self, channel_id: u64, m: Historic<'_>) -> u64 {
        let mut st = self.inner.state();
        st.users.insert(m.author.id, m.author.clone());
        let id = match m.id {
            Some(id) => id,
            None => next_id(&mut st),
        };
        let mut json = self.inner.message_json(
            &st,
            id,
            NewMessage { channel_id, author: m.author, content: m.content, mentions: vec![], reply_to: m.reply_to },
        );
        if m.kind != 0 {
            json["type"] = json!(m.kind);
        }
        if let Some(at) = m.at_ms {
            json["timestamp"] = json!(iso8601(at));
        }
        json["reactions"] = m
            .reactions
            .iter()
            .map(|(emoji, count)| {
                json!({ "count": count, "count_details": { "burst": 0, "normal": count }, "me": false, "me_burst": false,
                        "emoji": emoji_json(emoji), "burst_colors": [] })
            })
            .collect();
        st.messages.insert(id, json);
        id
    }

    /// The next `n` history listings are refused with 429 and `retry_after` seconds.
    pub fn rate_limit_listings(&self, n: usize, retry_after: f64) {
        let mut st = self.inner.state();
        st.listing.rate_limited = n;
        st.listing.retry_after = retry_after;
    }

    /// Listing `channel_id`'s history is refused with 403 (Missing Access).
    pub fn forbid(&self, channel_id: u64) {
        self.inner.state().listing.forbidden.insert(channel_id);
    }

    /// Each history page is answered after `ms`.
    pub fn slow_pages(&self, ms: u64) {
        self.inner.state().listing.page_delay_ms = ms;
    }

    /// History pages answered so far (429s and 403s not counted).
    pub fn pages_served(&self) -> usize {
        self.inner.state().listing.pages
    }
}

impl Inner {
    /// A 429 for a listing while rate limited, with Discord's body and header.
    pub(super) fn listing_refusal(&self, method: &str, path: &str) -> Option<Response<Full<Bytes>>> {
        let segments: Vec<&str> = path.trim_start_matches("/api/v10/").split('/').collect();
        if !matches!((method, segments.as_slice()), ("GET", ["channels", _, "messages"])) {
            return None;
        }
        let mut st = self.state();
        if st.listing.rate_limited == 0 {
            return None;
        }
        st.listing.rate_limited -= 1;
        let body = json!({ "message": "You are being rate limited.", "retry_after": st.listing.retry_after, "global": false });
        let header = format!("{}", st.listing.retry_after.ceil() as u64);
        Some(
            Response::builder()
                .status(StatusCode::TOO_MANY_REQUESTS)
                .header("content-type", "application/json")
                .header("retry-after", header)
                .header("x-ratelimit-scope", "user")
                .body(Full::new(Bytes::from(body.to_string())))
                .unwrap(),
        )
    }

    pub(super) fn page_delay(&self) -> Duration {
        Duration::from_millis(self.state().listing.page_delay_ms)
    }

    /// `GET /channels/{id}/messages?after=&limit=`: the `limit` oldest after `after`, newest
    /// first, as Discord answers.
    pub(super) fn list_messages(&self, channel_id: u64, query: &str) -> (StatusCode, Value) {
        if !self.is_guild_channel(channel_id) && !self.state().dm_channels.values().any(|&c| c == channel_id) {
            return super::rest::not_found();
        }
        let mut st = self.state();
        if st.listing.forbidden.contains(&channel_id) {
            return (StatusCode::FORBIDDEN, json!({ "message": "Missing Access", "code": 50001 }));
        }
        let param = |name: &str| query.split('&').find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse::<u64>().ok());
        let (after, limit) = (param("after").unwrap_or(0), param("limit").unwrap_or(50).clamp(1, 100) as usize);
        let mut page: Vec<(u64, Value)> = st
            .messages
            .iter()
            .filter(|(id, m)| **id > after && id_of(&m["channel_id"]) == Some(channel_id))
            .map(|(id, m)| (*id, m.clone()))
            .collect();
        page.sort_by_key(|(id, _)| *id);
        page.truncate(limit);
        page.reverse();
        st.listing.pages += 1;
        (StatusCode::OK, Value::Array(page.into_iter().map(|(_, m)| m).collect()))
    }

    /// The guild's channels, and the thread listings a fetch looks at.
    pub(super) fn guild_listing(&self, segments: &[&str]) -> Option<(StatusCode, Value)> {
        let guild = self.guild_id.to_string();
        Some(match segments {
            ["users", "@me", "guilds"] => (
                StatusCode::OK,
                json!([{ "id": guild, "name": "Fake Guild", "icon": null, "owner": false, "permissions": "0", "features": [] }]),
            ),
            ["guilds", g, "channels"] if *g == guild => {
                (StatusCode::OK, Value::Array(self.channel_ids.iter().filter_map(|c| self.channel_json(*c)).collect()))
            }
            ["guilds", g, "threads", "active"] if *g == guild => {
                let ids: Vec<u64> = self.state().threads.keys().copied().collect();
                let threads: Vec<Value> = ids.into_iter().filter_map(|t| self.channel_json(t)).collect();
                (StatusCode::OK, json!({ "threads": threads, "members": [] }))
            }
            ["channels", _, "threads", "archived", "public"] => {
                (StatusCode::OK, json!({ "threads": [], "members": [], "has_more": false }))
            }
            _ => return None,
        })
    }
}
