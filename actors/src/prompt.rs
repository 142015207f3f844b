//! What a prompt is made of, before a chat template turns it into text.

use serde::{Deserialize, Serialize};

/// The natural "regular on this server" prompt of seed 003.
pub const DEFAULT_SYSTEM_PROMPT: &str = "You're a regular on this Discord server. You've been here a while, \
you know the vibe, you know the people.\n\n\
Just chat like you normally would. Be yourself. If something's funny, laugh. If something's dumb, \
call it out. If you want to spam a word for emphasis, do it. Short responses are fine. Long rants \
are fine too.\n\n\
Don't act like you're here to help or assist - you're just hanging out. No formality, no AI speak, \
just natural conversation.\n\n\
Match the energy of the room.";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One turn of a conversation as the model sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChatTurn {
    pub role: Role,
    pub content: String,
}

impl ChatTurn {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self { role, content: content.into() }
    }
}

/// Someone's message as a user turn in a channel with several speakers: `name: text`. Serving
/// and the training set both write it here, so the model learns the format it is served.
pub fn spoken(author: &str, text: &str) -> ChatTurn {
    ChatTurn::new(Role::User, format!("{author}: {text}"))
}

/// The turns for one generation: a system prompt, then the conversation, oldest first,
/// ending with the user turn to answer.
pub fn build_turns(system_prompt: &str, history: &[ChatTurn]) -> Vec<ChatTurn> {
    let mut turns = Vec::with_capacity(history.len() + 1);
    if !system_prompt.trim().is_empty() {
        turns.push(ChatTurn::new(Role::System, system_prompt));
    }
    turns.extend(history.iter().cloned());
    turns
}

/// Given the token cost of each turn (the system turn first if `has_system`), returns how many
/// of the oldest conversation turns to drop so the rest fits `budget`. The system turn and the
/// last turn are never dropped; `None` when even those two do not fit.
pub fn turns_to_drop(costs: &[usize], has_system: bool, budget: usize) -> Option<usize> {
    let fixed = usize::from(has_system);
    let conversation = &costs[fixed..];
    if conversation.is_empty() {
        return (costs.iter().sum::<usize>() <= budget).then_some(0);
    }
    let mut total: usize = costs.iter().sum();
    let mut dropped = 0;
    while total > budget {
        if dropped + 1 >= conversation.len() {
            return None;
        }
        total -= conversation[dropped];
        dropped += 1;
    }
    Some(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_prompt_comes_first_and_blank_is_left_out() {
        let history = vec![ChatTurn::new(Role::User, "hi")];
        let turns = build_turns("be nice", &history);
        assert_eq!(turns[0], ChatTurn::new(Role::System, "be nice"));
        assert_eq!(turns[1].content, "hi");
        assert_eq!(build_turns("  ", &history).len(), 1);
    }

    #[test]
    fn oldest_turns_go_first_until_it_fits() {
        // system 10, then turns of 50, 40, 30, 20 (the last is the question)
        let costs = [10, 50, 40, 30, 20];
        assert_eq!(turns_to_drop(&costs, true, 150), Some(0));
        assert_eq!(turns_to_drop(&costs, true, 149), Some(1));
        assert_eq!(turns_to_drop(&costs, true, 60), Some(2));
        assert_eq!(turns_to_drop(&costs, true, 30), Some(3));
        assert_eq!(turns_to_drop(&costs, true, 29), None);
        assert_eq!(turns_to_drop(&[5], false, 4), None);
    }
}
