//! Splitting a long reply into Discord-sized messages at natural boundaries.

/// Discord's limit for one message.
pub const DISCORD_LIMIT: usize = 2000;

/// Splits `text` into pieces of at most `limit` characters, cutting at the last line break,
/// else sentence end, else space before the limit; hard-cuts only a run with none of those.
pub fn split_message(text: &str, limit: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        if rest.chars().count() <= limit {
            out.push(rest.to_string());
            break;
        }
        let window_end = rest.char_indices().nth(limit).map_or(rest.len(), |(i, _)| i);
        let window = &rest[..window_end];
        let cut = window
            .rfind('\n')
            .map(|i| i + 1)
            .or_else(|| window.rfind(". ").or_else(|| window.rfind("! ")).or_else(|| window.rfind("? ")).map(|i| i + 1))
            .or_else(|| window.rfind(' ').map(|i| i + 1))
            .filter(|&i| i > 0)
            .unwrap_or(window_end);
        let (piece, tail) = rest.split_at(cut);
        let piece = piece.trim();
        if !piece.is_empty() {
            out.push(piece.to_string());
        }
        rest = tail.trim_start();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_one_message() {
        assert_eq!(split_message("hello", 2000), vec!["hello"]);
        assert!(split_message("   ", 2000).is_empty());
    }

    #[test]
    fn five_thousand_characters_make_three_messages_at_boundaries() {
        let sentence = "The quick brown fox jumps over the lazy dog. ";
        let text = sentence.repeat(5000 / sentence.len() + 1);
        let parts = split_message(&text, DISCORD_LIMIT);
        assert_eq!(parts.len(), 3);
        for p in &parts {
            assert!(p.chars().count() <= DISCORD_LIMIT);
            assert!(p.ends_with('.'), "cut at a sentence end: {:?}", &p[p.len() - 10..]);
        }
        assert_eq!(parts.join(" "), text.trim());
    }

    #[test]
    fn lines_are_preferred_and_unbroken_runs_are_hard_cut() {
        let parts = split_message("aaaa bbbb\ncccc dddd", 12);
        assert_eq!(parts, vec!["aaaa bbbb", "cccc dddd"]);
        let parts = split_message(&"é".repeat(25), 10);
        assert_eq!(parts.iter().map(|p| p.chars().count()).collect::<Vec<_>>(), vec![10, 10, 5]);
    }
}
