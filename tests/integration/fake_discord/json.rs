//! JSON pieces as Discord sends them, and small helpers.

use super::*;

pub(super) fn user_json(user: &FakeUser) -> Value {
    json!({
        "id": user.id.to_string(), "username": user.name, "global_name": null,
        "discriminator": "0", "avatar": null, "bot": user.bot,
    })
}

/// A guild member without `user` (as in MESSAGE_CREATE's `member`); add it where needed.
pub(super) fn member_json(joined_at: &str) -> Value {
    json!({ "roles": [], "joined_at": joined_at, "deaf": false, "mute": false, "flags": 0, "nick": null })
}

pub(super) fn dm_channel_json(channel_id: u64, user: &FakeUser) -> Value {
    json!({ "id": channel_id.to_string(), "type": 1, "last_message_id": null, "recipients": [user_json(user)] })
}

/// `"👍"` is a unicode emoji; `"name:123"` a custom one (how serenity writes it in the URL).
pub(super) fn emoji_json(emoji: &str) -> Value {
    match emoji.split_once(':') {
        Some((name, id)) if id.parse::<u64>().is_ok() => json!({ "id": id, "name": name, "animated": false }),
        _ => json!({ "id": null, "name": emoji }),
    }
}

/// Snowflakes arrive as strings (serenity writes them so) or numbers.
pub(super) fn id_of(v: &Value) -> Option<u64> {
    v.as_str().and_then(|s| s.parse().ok()).or_else(|| v.as_u64())
}

pub(super) fn parse_id(segment: &str) -> u64 {
    segment.parse().unwrap_or(0)
}

/// A new snowflake: the current time in its top bits like Discord's, always increasing.
pub(super) fn next_id(st: &mut State) -> u64 {
    st.last_id = ((now_ms() - DISCORD_EPOCH_MS) << 22).max(st.last_id + 1);
    st.last_id
}

pub(super) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// RFC 3339 in UTC from Unix milliseconds (days to civil date after H. Hinnant).
pub(super) fn iso8601(ms: u64) -> String {
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

pub(super) fn percent_decode(s: &str) -> String {
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
