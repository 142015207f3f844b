//! Slash commands with the real serenity client against the fake Discord: registered once
//! each from the command table, deferred at once and edited in, private answers ephemeral.

use crate::discord::{admin, alice, bot_config, owner, start, BOT, CH1, CH2, GUILD, WAIT};
use crate::fake_discord::{Answer, FakeDiscord};
use serde_json::{json, Value};
use sidekick::config::SlashRegistration;
use sidekick_actors::clock::SystemClock;
use sidekick_actors::commands::COMMANDS;
use std::sync::Arc;

fn names(commands: &[Value]) -> Vec<String> {
    let mut names: Vec<String> = commands.iter().map(|c| c["name"].as_str().unwrap_or_default().to_string()).collect();
    names.sort();
    names
}

fn table_names() -> Vec<String> {
    let mut names: Vec<String> = COMMANDS.iter().map(|c| c.name.to_string()).collect();
    names.sort();
    names
}

/// The answer edited into the deferred response, after the deferral itself.
async fn answer(fake: &FakeDiscord, token: &str) -> (Answer, Answer) {
    let answers = fake.wait_answer(token, WAIT).await;
    assert!(answers.len() >= 2, "no answer: {answers:?}");
    assert_eq!((answers[0].kind, answers[0].body["type"].as_u64()), ("callback", Some(5)), "deferred at once");
    assert_eq!(answers[1].kind, "edit");
    assert_eq!(answers[1].body["allowed_mentions"]["parse"], json!([]), "an answer pings nobody");
    (answers[0].clone(), answers[1].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slash_commands_answer_as_their_bang_twins_and_private_answers_stay_private() {
    let fake = FakeDiscord::start(BOT, owner(), GUILD, &[CH1, CH2]).await;
    let dir = tempfile::tempdir().unwrap();
    let bot = start(&bot_config(dir.path(), &fake), &fake, Arc::new(SystemClock)).await;

    let (deferral, pong) = answer(&fake, &fake.slash(CH1, &alice(), "ping", json!([]))).await;
    assert!(!deferral.ephemeral());
    assert_eq!(pong.content(), "Pong!");

    let temperature = json!([{ "name": "temperature", "type": 10, "value": 0.9 }]);
    let (deferral, refusal) = answer(&fake, &fake.slash(CH1, &alice(), "settemp", temperature.clone())).await;
    assert!(deferral.ephemeral(), "a refusal is for the asker only");
    assert_eq!(refusal.content(), "Only admins can do that.");

    let (deferral, done) = answer(&fake, &fake.slash(CH1, &admin(), "settemp", temperature)).await;
    assert!(!deferral.ephemeral());
    assert_eq!(done.content(), "Default temperature set to 0.9.");

    let (deferral, settings) = answer(&fake, &fake.slash(CH1, &alice(), "config", json!([]))).await;
    assert!(deferral.ephemeral(), "!config is private");
    assert!(settings.content().contains("temperature = 0.9"), "{}", settings.content());

    let half = json!([{ "name": "key", "type": 3, "value": "temperature" }]);
    let (deferral, mistake) = answer(&fake, &fake.slash(CH1, &alice(), "config", half)).await;
    assert!(deferral.ephemeral());
    assert_eq!(mistake.content(), "usage: `/config [<key> <value>]`, e.g. `/config temperature 0.9`");

    let hello = json!([{ "name": "message", "type": 3, "value": "hello there, who are you?" }]);
    let (deferral, reply) = answer(&fake, &fake.slash(CH2, &alice(), "chat", hello)).await;
    assert!(!deferral.ephemeral());
    assert!(!reply.content().is_empty() && !reply.content().starts_with('⚠'), "{}", reply.content());

    let dm = fake.dm_channel(&alice());
    let (_, pong) = answer(&fake, &fake.slash(dm, &alice(), "ping", json!([]))).await;
    assert_eq!(pong.content(), "Pong!", "in a DM too");
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_replaces_stale_commands_and_a_restart_adds_no_duplicates() {
    let fake = FakeDiscord::start(BOT, owner(), GUILD, &[CH1, CH2]).await;
    // An older version registered a command since removed, and lacked one added since.
    let mut before: Vec<&str> = COMMANDS.iter().map(|c| c.name).filter(|n| *n != "engagement").collect();
    before.push("dance");
    fake.register_before(Some(GUILD), &before);
    fake.register_before(None, &["ping"]);
    let dir = tempfile::tempdir().unwrap();
    let config = bot_config(dir.path(), &fake);

    for start_number in 1..=2 {
        let bot = start(&config, &fake, Arc::new(SystemClock)).await;
        assert!(fake.wait_overwrites(start_number, WAIT).await, "start {start_number}: registered");
        let (_, pong) = answer(&fake, &fake.slash(CH1, &alice(), "ping", json!([]))).await;
        assert_eq!(pong.content(), "Pong!");
        assert_eq!(names(&fake.commands(Some(GUILD))), table_names(), "start {start_number}: each command once, nothing stale");
        assert!(fake.commands(None).is_empty(), "start {start_number}: no global twin shows each command twice");
        bot.stop().await;
    }
    assert_eq!(fake.overwrites(Some(GUILD)), 2, "one overwrite per start");

    let mut config = config;
    config.discord.register = SlashRegistration::Global;
    let bot = start(&config, &fake, Arc::new(SystemClock)).await;
    assert!(fake.wait_overwrites(3, WAIT).await);
    assert_eq!(names(&fake.commands(None)), table_names());
    assert!(fake.commands(Some(GUILD)).is_empty(), "moved, not copied");
    bot.stop().await;

    config.discord.register = SlashRegistration::Off;
    let bot = start(&config, &fake, Arc::new(SystemClock)).await;
    assert!(fake.wait_overwrites(4, WAIT).await);
    assert_eq!(crate::discord::ask(&fake, CH1, &alice(), "!ping").await, "Pong!", "`!` commands work without slash ones");
    assert!(fake.commands(None).is_empty() && fake.commands(Some(GUILD)).is_empty(), "off: none left behind");
    bot.stop().await;
}
