//! The few Discord REST calls a fetch makes, with Discord's rate-limit rules: a 429 is waited
//! out for its `retry_after`, and a bucket that says it is empty (`X-RateLimit-Remaining: 0`)
//! is waited out before the next call. Bodies are read as serenity's model types.
//!
//! Why not serenity's `Http`: its rate limiter sends to discord.com whatever the configured
//! base (so the daemon turns it off behind a proxy), and its error type drops `retry_after`;
//! a fetch must honour both against any `DISCORD_API_BASE`.

use serde::de::DeserializeOwned;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum RestError {
    #[error("no access (403): the bot may not read this channel's history")]
    Forbidden,
    #[error("no such channel (404)")]
    NotFound,
    #[error("Discord refused the token (401): reset it in the developer portal and update DISCORD_TOKEN in .env")]
    Unauthorized,
    #[error("Discord answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("cannot reach Discord at {base}: {why}")]
    Unreachable { base: String, why: String },
    #[error("an answer that is not what Discord sends: {0}")]
    Garbled(String),
    #[error("still rate limited after {0} tries")]
    RateLimited(u32),
}

/// The longest a single 429 is waited out before the fetch gives up on the call.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
const MAX_TRIES: u32 = 8;

pub struct Rest {
    client: reqwest::Client,
    base: String,
    token: String,
    /// Time spent waiting for rate limits, for the report.
    pub waited: Duration,
    pub rate_limited: u32,
}

impl Rest {
    pub fn new(base: &str, token: &str) -> Rest {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("an HTTP client");
        Rest { client, base: base.trim_end_matches('/').to_string(), token: token.to_string(), waited: Duration::ZERO, rate_limited: 0 }
    }

    /// `GET /api/v10{path}`, waiting out rate limits.
    pub async fn get<T: DeserializeOwned>(&mut self, path: &str) -> Result<T, RestError> {
        let url = format!("{}/api/v10{path}", self.base);
        for _ in 0..MAX_TRIES {
            let response = self
                .client
                .get(&url)
                .header("Authorization", format!("Bot {}", self.token))
                .send()
                .await
                .map_err(|e| RestError::Unreachable { base: self.base.clone(), why: e.to_string() })?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = response.bytes().await.map_err(|e| RestError::Unreachable { base: self.base.clone(), why: e.to_string() })?;
            if status == 429 {
                let wait = retry_after(&headers, &body).min(MAX_RETRY_AFTER);
                tracing::info!(seconds = wait.as_secs_f64(), %path, "rate limited: waiting");
                self.rate_limited += 1;
                self.pause(wait).await;
                continue;
            }
            if header_f64(&headers, "x-ratelimit-remaining") == Some(0.0) {
                if let Some(reset) = header_f64(&headers, "x-ratelimit-reset-after") {
                    self.pause(Duration::from_secs_f64(reset.clamp(0.0, MAX_RETRY_AFTER.as_secs_f64()))).await;
                }
            }
            return match status {
                200 => serde_json::from_slice(&body).map_err(|e| RestError::Garbled(e.to_string())),
                401 => Err(RestError::Unauthorized),
                403 => Err(RestError::Forbidden),
                404 => Err(RestError::NotFound),
                _ => Err(RestError::Status { status, body: String::from_utf8_lossy(&body).chars().take(200).collect() }),
            };
        }
        Err(RestError::RateLimited(MAX_TRIES))
    }

    async fn pause(&mut self, wait: Duration) {
        self.waited += wait;
        tokio::time::sleep(wait).await;
    }
}

/// A 429's wait: the body's `retry_after` (seconds, fractional), else the `Retry-After` header.
fn retry_after(headers: &reqwest::header::HeaderMap, body: &[u8]) -> Duration {
    let from_body = serde_json::from_slice::<serde_json::Value>(body).ok().and_then(|v| v["retry_after"].as_f64());
    let seconds = from_body.or_else(|| header_f64(headers, "retry-after")).unwrap_or(1.0);
    Duration::from_secs_f64(seconds.max(0.0))
}

fn header_f64(headers: &reqwest::header::HeaderMap, name: &str) -> Option<f64> {
    headers.get(name)?.to_str().ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_429_says_how_long_to_wait_in_its_body_or_header() {
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(
            retry_after(&headers, br#"{"message":"You are being rate limited.","retry_after":0.25,"global":false}"#),
            Duration::from_millis(250)
        );
        headers.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&headers, b"not json"), Duration::from_secs(2));
        assert_eq!(retry_after(&reqwest::header::HeaderMap::new(), b""), Duration::from_secs(1), "neither: a second");
    }
}
