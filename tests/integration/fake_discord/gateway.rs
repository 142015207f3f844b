//! The gateway websocket: HELLO, IDENTIFY/RESUME, heartbeats, and dispatches in order.

use super::*;

pub(super) async fn serve_gateway(inner: Arc<Inner>, listener: TcpListener) {
    while let Ok((tcp, _)) = listener.accept().await {
        tokio::spawn(gateway_connection(inner.clone(), tcp));
    }
}

pub(super) async fn gateway_connection(inner: Arc<Inner>, tcp: TcpStream) {
    // serenity connects to `{url}?v=10` and needs no particular reply headers.
    let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else { return };
    if inner.state().dark {
        return; // as if Discord were unreachable: the connection drops at once
    }
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let id = {
        let mut st = inner.state();
        st.connections += 1;
        // A newer connection replaces the old one as the dispatch target.
        st.current = Some(Conn { id: st.connections, tx: tx.clone(), live: false });
        st.connections
    };
    let interval = inner.state().heartbeat_ms.unwrap_or(HEARTBEAT_MS);
    let _ = tx.send(Out::Frame(json!({ "op": 10, "d": { "heartbeat_interval": interval } })));
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(Out::Frame(v)) => {
                    if sink.send(WsMessage::Text(v.to_string())).await.is_err() {
                        break;
                    }
                }
                Some(Out::Close(code)) => {
                    use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame};
                    let frame = CloseFrame { code: CloseCode::from(code), reason: "closed by the fake Discord".into() };
                    let _ = sink.send(WsMessage::Close(Some(frame))).await;
                    break;
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
    pub(super) fn on_gateway_payload(&self, conn_id: usize, text: &str) {
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
                // A privileged intent the application may not use: Discord closes with 4014.
                let intents = payload["d"]["intents"].as_u64().unwrap_or(0);
                if st.refuse_intents & intents != 0 {
                    st.requests.push(format!("GATEWAY IDENTIFY (intents {intents} refused with 4014)"));
                    let _ = tx.send(Out::Close(4014));
                    return;
                }
                if let Some(code) = st.close_on_identify {
                    st.requests.push(format!("GATEWAY IDENTIFY (closed with {code})"));
                    let _ = tx.send(Out::Close(code));
                    return;
                }
                st.identified_intents.push(intents);
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

    pub(super) fn ready_json(&self, session_id: &str) -> Value {
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
    pub(super) fn guild_json(&self) -> Value {
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
}

/// Sends a dispatch (op 0) with the next sequence number to the live connection, if any, and
/// keeps it for replay on RESUME. Called with the state locked, so the order is the send order.
pub(super) fn dispatch(st: &mut State, event: &str, d: Value) {
    st.seq += 1;
    let payload = json!({ "op": 0, "t": event, "s": st.seq, "d": d });
    if let Some(conn) = st.current.as_ref().filter(|c| c.live) {
        let _ = conn.tx.send(Out::Frame(payload.clone()));
    }
    st.dispatched.push(payload);
}
