//! The console gateway of `sidekick chat`: stdin lines in, streamed replies out, through the
//! same conversation and model actors as Discord.

use ractor::ActorRef;
use sidekick_actors::commands::Access;
use sidekick_actors::{ChannelKey, Inbound, ReplyEvent, RootMsg};
use std::io::{IsTerminal, Write};
use tokio::io::{AsyncBufRead, AsyncBufReadExt};
use tokio::sync::{mpsc, watch};

pub struct ConsoleOptions {
    /// Print the exact prompt given to the model before each reply.
    pub show_prompt: bool,
}

/// Runs until end of input, `!quit`, or a shutdown request. A reply in progress when
/// shutdown is requested is still printed to its end (the tree cuts it at the grace period).
pub async fn run(
    root: &ActorRef<RootMsg>,
    input: impl AsyncBufRead + Unpin,
    mut out: impl Write,
    mut stop: watch::Receiver<bool>,
    options: ConsoleOptions,
) -> anyhow::Result<()> {
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        writeln!(out, "Sidekick chat. Type a message, `!help` for commands, `!quit` or Ctrl-D to leave.")?;
    }
    let mut lines = input.lines();
    loop {
        if *stop.borrow() {
            break;
        }
        if interactive {
            write!(out, "you> ")?;
            out.flush()?;
        }
        let line = tokio::select! {
            line = lines.next_line() => line?,
            _ = stop.changed() => break,
        };
        let Some(line) = line else { break };
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        if matches!(text, "!quit" | "!exit") {
            break;
        }
        let (reply, mut events) = mpsc::unbounded_channel();
        // Whoever runs the console owns the bot.
        let inbound = Inbound::addressed("you", text, Access::Owner, reply);
        root.send_message(RootMsg::Route { channel: ChannelKey::Console, inbound })?;
        if interactive {
            write!(out, "sidekick> ")?;
        }
        while let Some(event) = events.recv().await {
            match event {
                ReplyEvent::Notice(text) => {
                    writeln!(out, "{text}")?;
                    break;
                }
                ReplyEvent::Started { prompt, .. } if options.show_prompt => {
                    writeln!(out, "--- prompt ---\n{prompt}\n--- reply ---")?;
                }
                ReplyEvent::Started { .. } => {}
                ReplyEvent::Token(piece) => {
                    // Leading whitespace of a reply is noise on a terminal.
                    write!(out, "{piece}")?;
                    out.flush()?;
                }
                ReplyEvent::Done { .. } => {
                    writeln!(out)?;
                    break;
                }
                ReplyEvent::Failed(why) => {
                    writeln!(out, "(!) {why}")?;
                    break;
                }
            }
        }
        out.flush()?;
    }
    Ok(())
}
