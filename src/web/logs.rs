//! The bot's log lines as the console shows them: the last few thousand kept, new ones
//! broadcast to every open page.

use serde::Serialize;
use sidekick_actors::sync::LockExt;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// Lines kept for a page that opens later, and for the download.
pub const KEEP_LINES: usize = 5_000;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LogLine {
    /// Counts up from 1, so a page that reconnects asks only for what it missed.
    pub seq: u64,
    /// `error`, `warn`, `info`, `debug` or `trace`; `info` for a line without a level.
    pub level: &'static str,
    pub text: String,
}

#[derive(Clone)]
pub struct LogBook {
    inner: Arc<Mutex<Kept>>,
    sender: broadcast::Sender<LogLine>,
}

struct Kept {
    lines: VecDeque<LogLine>,
    next: u64,
}

impl Default for LogBook {
    fn default() -> Self {
        Self { inner: Arc::new(Mutex::new(Kept { lines: VecDeque::new(), next: 1 })), sender: broadcast::channel(1024).0 }
    }
}

impl LogBook {
    /// Adds one line (colour codes removed) and sends it to the pages listening.
    pub fn push(&self, raw: &str) -> LogLine {
        let text = strip_ansi(raw.trim_end());
        let mut kept = self.inner.lock_or_recover();
        let line = LogLine { seq: kept.next, level: level_of(&text), text };
        kept.next += 1;
        if kept.lines.len() == KEEP_LINES {
            kept.lines.pop_front();
        }
        kept.lines.push_back(line.clone());
        // Sent under the lock, so a page that subscribes while reading the backlog neither
        // misses a line nor sees one twice.
        let _ = self.sender.send(line.clone());
        line
    }

    /// The kept lines after `seq`, and a receiver for the ones that follow.
    pub fn follow(&self, after: u64) -> (Vec<LogLine>, broadcast::Receiver<LogLine>) {
        let kept = self.inner.lock_or_recover();
        let backlog = kept.lines.iter().filter(|l| l.seq > after).cloned().collect();
        (backlog, self.sender.subscribe())
    }

    /// Every kept line, as a text file.
    pub fn text(&self) -> String {
        let kept = self.inner.lock_or_recover();
        kept.lines.iter().map(|l| format!("{}\n", l.text)).collect()
    }
}

/// The level of a tracing line (`2026-12-01T10:00:00.1Z  WARN message`), or of the bot's own
/// `sidekick: …` lines on stderr, which are errors unless they say it runs.
pub fn level_of(line: &str) -> &'static str {
    for word in line.split_whitespace().take(3) {
        match word {
            "ERROR" => return "error",
            "WARN" => return "warn",
            "INFO" => return "info",
            "DEBUG" => return "debug",
            "TRACE" => return "trace",
            _ => {}
        }
    }
    match line.strip_prefix("sidekick: ") {
        Some(rest) if rest.starts_with("running") => "info",
        Some(_) => "error",
        None => "info",
    }
}

/// Removes ANSI escape sequences (colour), which a log file or a page cannot show.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_gets_its_level_and_loses_its_colours() {
        let book = LogBook::default();
        let line = book.push("2026-12-01T10:00:00.123Z \u{1b}[33m WARN\u{1b}[0m retrieval is off\n");
        assert_eq!((line.seq, line.level, line.text.as_str()), (1, "warn", "2026-12-01T10:00:00.123Z  WARN retrieval is off"));
        assert_eq!(level_of("sidekick: Discord refused the token"), "error");
        assert_eq!(level_of("sidekick: running on Discord; SIGTERM or Ctrl-C stops it"), "info");
        assert_eq!(level_of("2026-12-01T10:00:00Z ERROR the bot cannot go on"), "error");
    }

    #[test]
    fn a_page_gets_what_it_missed_then_what_follows() {
        let book = LogBook::default();
        for n in 0..3 {
            book.push(&format!("line {n}"));
        }
        let (backlog, mut rx) = book.follow(1);
        assert_eq!(backlog.iter().map(|l| l.seq).collect::<Vec<_>>(), vec![2, 3]);
        book.push("line 3");
        assert_eq!(rx.try_recv().unwrap().text, "line 3");
        assert_eq!(book.text(), "line 0\nline 1\nline 2\nline 3\n");
    }

    #[test]
    fn only_the_last_lines_are_kept() {
        let book = LogBook::default();
        for n in 0..KEEP_LINES + 10 {
            book.push(&n.to_string());
        }
        let (backlog, _) = book.follow(0);
        assert_eq!((backlog.len(), backlog[0].text.as_str()), (KEEP_LINES, "10"));
    }
}
