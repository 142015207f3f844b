//! A prompt as the model reads it: the chat template's text, and its tokens, with only the
//! template's own markup read as control tokens. What people wrote is tokenized with
//! special-token parsing off, so `<|im_start|>`, `<file_sep>` or another model family's
//! `[INST]` typed in a message stay the characters they are.

use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::token::LlamaToken;
use sidekick_actors::ports::ModelError;
use sidekick_actors::prompt::ChatTurn;

/// Stands in for turn `i`'s content while the template is applied; private-use characters
/// that are removed from what people write, so no message can forge one.
fn marker(i: usize) -> String {
    format!("\u{F8FD}{i}\u{F8FE}")
}

/// What people write, as the model may read it: no NUL (the template API refuses it) and no
/// marker characters.
fn clean(content: &str) -> String {
    content.chars().filter(|c| !matches!(c, '\0' | '\u{F8FD}' | '\u{F8FE}')).collect()
}

/// The template's text around each of `n` markers, in order: `n + 1` pieces, or `None` when
/// the template did not keep every marker where it belongs.
pub fn split_at_markers(skeleton: &str, n: usize) -> Option<Vec<&str>> {
    let mut pieces = Vec::with_capacity(n + 1);
    let mut rest = skeleton;
    for i in 0..n {
        let m = marker(i);
        let at = rest.find(&m)?;
        pieces.push(&rest[..at]);
        rest = &rest[at + m.len()..];
    }
    pieces.push(rest);
    Some(pieces)
}

fn apply(model: &LlamaModel, template: &LlamaChatTemplate, turns: &[(&str, String)], add_assistant: bool) -> Result<String, ModelError> {
    let messages = turns
        .iter()
        .map(|(role, content)| LlamaChatMessage::new(role.to_string(), content.clone()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ModelError::Decode(e.to_string()))?;
    model.apply_chat_template(template, &messages, add_assistant).map_err(|e| ModelError::Decode(format!("chat template: {e}")))
}

/// The prompt text for `turns` and its tokens (with the beginning-of-sequence token).
pub fn render(
    model: &LlamaModel,
    template: &LlamaChatTemplate,
    turns: &[ChatTurn],
    add_assistant: bool,
) -> Result<(String, Vec<LlamaToken>), ModelError> {
    let contents: Vec<String> = turns.iter().map(|t| clean(&t.content)).collect();
    let real: Vec<(&str, String)> = turns.iter().zip(&contents).map(|(t, c)| (t.role.as_str(), c.clone())).collect();
    let text = apply(model, template, &real, add_assistant)?;
    let marked: Vec<(&str, String)> = turns.iter().enumerate().map(|(i, t)| (t.role.as_str(), marker(i))).collect();
    let skeleton = apply(model, template, &marked, add_assistant)?;
    let vocab = model.vocab();
    let Some(pieces) = split_at_markers(&skeleton, turns.len()) else {
        // A template that rewrites content (none llama.cpp ships does): read it all as text.
        tracing::warn!("the chat template changed the messages; reading the whole prompt without control tokens");
        return Ok((text.clone(), vocab.tokenize(text.as_bytes(), true, false)));
    };
    let mut tokens = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        tokens.extend(vocab.tokenize(piece.as_bytes(), i == 0, true));
        if let Some(content) = contents.get(i) {
            tokens.extend(vocab.tokenize(content.as_bytes(), false, false));
        }
    }
    Ok((text, tokens))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_text_is_cut_at_each_marker() {
        let skeleton = format!("<s>system\n{}</s>\n<s>user\n{}</s>\n<s>assistant\n", marker(0), marker(1));
        let pieces = split_at_markers(&skeleton, 2).unwrap();
        assert_eq!(pieces, ["<s>system\n", "</s>\n<s>user\n", "</s>\n<s>assistant\n"]);
        assert_eq!(split_at_markers(&format!("{}{}", marker(1), marker(0)), 2), None, "out of order");
        assert_eq!(split_at_markers("no markers", 1), None);
    }

    #[test]
    fn nobody_can_type_a_marker() {
        assert_eq!(clean(&format!("a{}b\0c", marker(3))), "a3bc");
    }
}
