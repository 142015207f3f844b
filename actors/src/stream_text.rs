//! Turning a stream of token bytes into text a user may see: whole UTF-8 characters only, and
//! nothing past a stop sequence (text that might begin one is held back until it is decided).

/// Stop sequences of seed 003, besides the template's end-of-turn token.
pub const DEFAULT_STOPS: &[&str] = &["<|im_end|>", "\n\nUser:", "\n\nuser:"];

#[derive(Debug, Default)]
pub struct TextStream {
    bytes: Vec<u8>,
    held: String,
    stops: Vec<String>,
    stopped: bool,
}

impl TextStream {
    pub fn new(stops: &[&str]) -> Self {
        Self { stops: stops.iter().map(|s| s.to_string()).collect(), ..Default::default() }
    }

    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Adds a token's bytes; returns the text that is now safe to show.
    pub fn push(&mut self, piece: &[u8]) -> String {
        if self.stopped {
            return String::new();
        }
        self.bytes.extend_from_slice(piece);
        let valid = match std::str::from_utf8(&self.bytes) {
            Ok(_) => self.bytes.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(), // a character still coming
            Err(_) => {
                // Invalid bytes will never become valid: show them as replacement characters.
                let lossy = String::from_utf8_lossy(&self.bytes).into_owned();
                self.bytes.clear();
                self.held.push_str(&lossy);
                return self.release();
            }
        };
        let complete: Vec<u8> = self.bytes.drain(..valid).collect();
        self.held.push_str(std::str::from_utf8(&complete).expect("checked above"));
        self.release()
    }

    /// The end of generation: whatever is held back is shown (unless a stop cut it).
    pub fn finish(&mut self) -> String {
        if self.stopped {
            return String::new();
        }
        let mut rest = std::mem::take(&mut self.held);
        rest.push_str(&String::from_utf8_lossy(&std::mem::take(&mut self.bytes)));
        rest
    }

    fn release(&mut self) -> String {
        if let Some(at) = self.stops.iter().filter_map(|s| self.held.find(s.as_str())).min() {
            self.stopped = true;
            let out = self.held[..at].to_string();
            self.held.clear();
            return out;
        }
        // Hold back the longest tail that is a prefix of some stop sequence.
        let mut keep = 0;
        for stop in &self.stops {
            for (i, _) in stop.char_indices().skip(1) {
                if self.held.ends_with(&stop[..i]) {
                    keep = keep.max(i);
                }
            }
        }
        let cut = self.held.len() - keep;
        let out = self.held[..cut].to_string();
        self.held.drain(..cut);
        out
    }
}

/// Streams text with leading and trailing whitespace removed, as if trimmed at the end:
/// whitespace is held until something visible follows it.
#[derive(Debug, Default)]
pub struct TrimmedStream {
    started: bool,
    held: String,
}

impl TrimmedStream {
    pub fn push(&mut self, piece: &str) -> String {
        let piece = if self.started { piece } else { piece.trim_start() };
        if piece.is_empty() {
            return String::new();
        }
        self.started = true;
        let visible_end = piece.trim_end().len();
        let mut out = std::mem::take(&mut self.held);
        out.push_str(&piece[..visible_end]);
        self.held.push_str(&piece[visible_end..]);
        if visible_end == 0 {
            // Only whitespace: keep holding it with what came before.
            self.held = out + &self.held;
            return String::new();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trimmed_stream_drops_outer_whitespace_only() {
        let mut t = TrimmedStream::default();
        let pieces = ["\n ", " Hi", " there", "\n", "\n", "you", "  ", "\n"];
        let shown: String = pieces.iter().map(|p| t.push(p)).collect();
        assert_eq!(shown, "Hi there\n\nyou");
    }

    #[test]
    fn split_characters_wait_for_their_last_byte() {
        let mut s = TextStream::new(&[]);
        let smile = "é🙂".as_bytes();
        assert_eq!(s.push(&smile[..1]), "");
        assert_eq!(s.push(&smile[1..4]), "é");
        assert_eq!(s.push(&smile[4..]), "🙂");
    }

    #[test]
    fn text_stops_before_a_stop_sequence_split_across_tokens() {
        let mut s = TextStream::new(DEFAULT_STOPS);
        assert_eq!(s.push(b"hello"), "hello");
        assert_eq!(s.push(b"\n\nUs"), "");
        assert_eq!(s.push(b"er: next"), "");
        assert!(s.stopped());
        assert_eq!(s.finish(), "");
    }

    #[test]
    fn held_text_that_is_not_a_stop_is_released() {
        let mut s = TextStream::new(DEFAULT_STOPS);
        assert_eq!(s.push(b"a\n\n"), "a");
        assert_eq!(s.push(b"Yes"), "\n\nYes");
        assert_eq!(s.push(b"\n"), "");
        assert_eq!(s.finish(), "\n");
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut s = TextStream::new(&[]);
        assert_eq!(s.push(&[0xff, b'a']), "\u{fffd}a");
    }
}
