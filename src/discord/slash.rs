//! Slash commands: one per row of the command table, with the same names, arguments, ranges
//! and access as their `!` twins, registered with Discord when the gateway is ready and run by
//! the same channel actor. Discord wants an answer within 3 s, so each is deferred at once and
//! the answer edited in; what only the asker needs (refusals, mistakes, private commands) is
//! ephemeral.

use super::deliver::answer_interaction;
use super::handler::Router;
use crate::config::SlashRegistration;
use serenity::all::{
    Command as DiscordCommand, CommandDataOptionValue, CommandInteraction, CommandOptionType, CreateAllowedMentions, CreateCommand,
    CreateCommandOption, CreateInteractionResponse, CreateInteractionResponseMessage, EditInteractionResponse, GuildId, Http, Permissions,
};
use sidekick_actors::commands::args::{ArgKind, ArgSpec};
use sidekick_actors::commands::{table, Access, Command, CommandSpec, COMMANDS};
use sidekick_actors::metric_names as m;
use sidekick_actors::{Inbound, RootMsg};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Discord's limit on a command's or an option's description.
const DESCRIPTION_LIMIT: usize = 100;
/// How usage is shown in answers to slash commands.
const SLASH: &str = "/";

/// Every command of the table as Discord takes it.
pub fn definitions() -> Vec<CreateCommand> {
    COMMANDS.iter().map(definition).collect()
}

fn definition(spec: &CommandSpec) -> CreateCommand {
    let command = CreateCommand::new(spec.name).description(short(spec.help));
    // Hidden from members without the permission (a server can change that in its settings);
    // the bot still checks its own admins and owner when the command runs.
    let command = match spec.access {
        Access::Everyone => command,
        Access::Admin => command.default_member_permissions(Permissions::MANAGE_GUILD),
        Access::Owner => command.default_member_permissions(Permissions::ADMINISTRATOR),
    };
    spec.args.iter().fold(command, |command, arg| command.add_option(option(arg)))
}

/// One argument as an option Discord validates: kinds, choices and ranges from the table.
fn option(arg: &ArgSpec) -> CreateCommandOption {
    let new = |kind| CreateCommandOption::new(kind, arg.name, short(arg.help)).required(arg.required);
    let choices = |option: CreateCommandOption, words: &[&str]| words.iter().fold(option, |o, w| o.add_string_choice(*w, *w));
    match arg.kind {
        ArgKind::Text => new(CommandOptionType::String),
        ArgKind::Word { suggestions } => choices(new(CommandOptionType::String), suggestions),
        ArgKind::Choice(words) => choices(new(CommandOptionType::String), words),
        ArgKind::Integer { min, max } => new(CommandOptionType::Integer).min_int_value(min.max(0) as u64).max_int_value(max.max(0) as u64),
        ArgKind::Number { min, max } => new(CommandOptionType::Number).min_number_value(min).max_number_value(max),
        ArgKind::Channel => new(CommandOptionType::Channel),
        ArgKind::User => new(CommandOptionType::User),
        ArgKind::Switch => new(CommandOptionType::Boolean),
    }
}

/// `text` within Discord's description limit, cut at a word.
fn short(text: &str) -> String {
    if text.chars().count() <= DESCRIPTION_LIMIT {
        return text.to_string();
    }
    let head: String = text.chars().take(DESCRIPTION_LIMIT - 1).collect();
    let cut = head.rfind(' ').unwrap_or(head.len());
    format!("{}…", head[..cut].trim_end_matches([',', ';', ' ']))
}

/// A slash command's options as the words its `!` twin would take.
fn raw_values(interaction: &CommandInteraction) -> Vec<(&str, String)> {
    let raw = |value: &CommandDataOptionValue| match value {
        CommandDataOptionValue::String(s) => Some(s.clone()),
        CommandDataOptionValue::Integer(n) => Some(n.to_string()),
        CommandDataOptionValue::Number(n) => Some(n.to_string()),
        CommandDataOptionValue::Boolean(b) => Some(if *b { "on" } else { "off" }.to_string()),
        CommandDataOptionValue::Channel(id) => Some(id.to_string()),
        CommandDataOptionValue::User(id) => Some(id.to_string()),
        _ => None,
    };
    interaction.data.options.iter().filter_map(|o| Some((o.name.as_str(), raw(&o.value)?))).collect()
}

/// Registers the commands where `mode` says, and clears the other place, so a change of
/// mode or of the table leaves neither duplicates nor stale commands. Discord's bulk
/// overwrite replaces a whole set, so registering again changes nothing.
pub async fn register(http: &Http, mode: SlashRegistration, guild: Option<GuildId>) -> Result<(), serenity::Error> {
    let (global, in_guilds) = match mode {
        SlashRegistration::Guild => (Vec::new(), definitions()),
        SlashRegistration::Global => (definitions(), Vec::new()),
        SlashRegistration::Off => (Vec::new(), Vec::new()),
    };
    match guild {
        None => DiscordCommand::set_global_commands(http, global).await.map(drop),
        Some(guild) => guild.set_commands(http, in_guilds).await.map(drop),
    }
}

impl Router {
    /// Runs a slash command: deferred at once, then routed to its channel like a message.
    pub async fn slash(&self, http: &Arc<Http>, interaction: CommandInteraction) {
        let access = self.access(interaction.user.id);
        let parsed = match table::find(&interaction.data.name) {
            Some(spec) => spec.from_named(SLASH, raw_values(&interaction)),
            None => Err(sidekick_actors::commands::CommandError::Unknown { prefix: SLASH.into(), name: interaction.data.name.clone() }),
        };
        let ephemeral = match &parsed {
            Ok(p) => p.spec.private || p.spec.access > access,
            Err(_) => true,
        };
        let defer = CreateInteractionResponse::Defer(CreateInteractionResponseMessage::new().ephemeral(ephemeral));
        if let Err(e) = interaction.create_response(http, defer).await {
            tracing::warn!(command = %interaction.data.name, error = %e, "could not answer a slash command");
            m::count_error("discord_send");
            return;
        }
        let parsed = match parsed {
            Ok(parsed) => parsed,
            Err(mistake) => {
                let edit = EditInteractionResponse::new().content(mistake.to_string()).allowed_mentions(CreateAllowedMentions::new());
                if let Err(e) = interaction.edit_response(http, edit).await {
                    tracing::warn!(error = %e, "could not answer a slash command");
                }
                return;
            }
        };
        let (reply, events) = mpsc::unbounded_channel();
        let user = &interaction.user;
        let text = match &parsed.command {
            Command::Chat(text) => text.clone(),
            _ => format!("{SLASH}{}", parsed.spec.name),
        };
        let inbound = Inbound {
            author: user.global_name.clone().unwrap_or_else(|| user.name.clone()),
            user_id: Some(user.id.to_string()),
            text,
            message_id: None,
            addressed: true,
            access,
            guild: interaction.guild_id.map(|g| g.to_string()),
            reply_to: None,
            queued_ahead: 0,
            command: Some(parsed),
            reply,
        };
        let channel = self.key(http, interaction.guild_id, interaction.channel_id, user.id).await;
        if self.root.send_message(RootMsg::Route { channel, inbound }).is_err() {
            tracing::warn!("the actor tree is gone; dropping a slash command");
            return;
        }
        tokio::spawn(answer_interaction(http.clone(), self.root.clone(), interaction, ephemeral, events));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn json(command: &CreateCommand) -> Value {
        serde_json::to_value(command).unwrap()
    }

    #[test]
    fn every_command_fits_discords_rules() {
        let named = discord_name;
        assert!(definitions().len() <= 100, "Discord allows 100 commands per scope");
        for (spec, command) in COMMANDS.iter().zip(definitions()) {
            let command = json(&command);
            assert!(named(command["name"].as_str().unwrap()), "{}", spec.name);
            let description = command["description"].as_str().unwrap();
            assert!((1..=DESCRIPTION_LIMIT).contains(&description.chars().count()), "{}: {description}", spec.name);
            let options = command["options"].as_array().cloned().unwrap_or_default();
            let required: Vec<bool> = options.iter().map(|o| o["required"].as_bool().unwrap_or(false)).collect();
            assert!(required.windows(2).all(|w| w[0] >= w[1]), "{}: required options come first", spec.name);
            for option in &options {
                assert!(named(option["name"].as_str().unwrap()), "{}", spec.name);
                assert!((1..=DESCRIPTION_LIMIT).contains(&option["description"].as_str().unwrap().chars().count()));
                assert!(option["choices"].as_array().map_or(0, Vec::len) <= 25);
            }
        }
    }

    /// Discord's rule for a command or option name, lower case: `^[-_\p{L}\p{N}]{1,32}$`.
    fn discord_name(name: &str) -> bool {
        (1..=32).contains(&name.chars().count()) && name.chars().all(|c| c == '-' || c == '_' || (c.is_alphanumeric() && !c.is_uppercase()))
    }

    #[test]
    fn options_carry_the_tables_kinds_ranges_and_choices() {
        let find = |name: &str| json(&definition(table::find(name).unwrap()));
        let feedback = find("feedback");
        assert_eq!(feedback["options"][0]["type"], 4, "an integer");
        assert_eq!((feedback["options"][0]["min_value"].as_u64(), feedback["options"][0]["max_value"].as_u64()), (Some(1), Some(5)));
        assert_eq!(feedback["options"][0]["required"], true);
        assert_eq!(feedback["options"][1]["type"], 3, "a string");
        let config = find("config");
        let keys: Vec<&str> = config["options"][0]["choices"].as_array().unwrap().iter().map(|c| c["value"].as_str().unwrap()).collect();
        assert_eq!(keys, ["temperature", "top_p", "top_k", "repeat_penalty", "max_tokens"]);
        assert_eq!(find("settemp")["options"][0]["type"], 10, "a number");
        assert_eq!(find("settemp")["options"][0]["max_value"], 1.0);
        assert_eq!(find("allow")["options"][0]["type"], 7, "a channel");
        assert_eq!(find("forget")["options"][0]["type"], 6, "a user");
        assert_eq!(find("mentions_only")["options"][0]["type"], 5, "a boolean");
    }

    #[test]
    fn admin_and_owner_commands_are_hidden_from_members_without_the_permission() {
        let permissions = |name: &str| json(&definition(table::find(name).unwrap()))["default_member_permissions"].clone();
        assert_eq!(permissions("ping"), Value::Null, "everyone's");
        assert_eq!(permissions("settemp"), Value::String(Permissions::MANAGE_GUILD.bits().to_string()));
        assert_eq!(permissions("rl_metrics"), Value::String(Permissions::ADMINISTRATOR.bits().to_string()));
    }

    #[test]
    fn the_readme_shows_each_commands_slash_twin() {
        let readme = include_str!("../../README.md");
        for spec in COMMANDS {
            assert!(readme.contains(&format!("`/{}", spec.name)), "README: no `/{}` in the command table", spec.name);
        }
    }

    #[test]
    fn long_help_is_cut_at_a_word() {
        assert_eq!(short("check that I'm awake"), "check that I'm awake");
        let long =
            "learn this server's voice from its history in the background (fetch, dataset, training, the gate); `status` says how far";
        let cut = short(long);
        assert!(cut.chars().count() <= DESCRIPTION_LIMIT && cut.ends_with('…') && long.starts_with(cut.trim_end_matches('…')), "{cut}");
    }
}
