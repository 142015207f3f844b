//! The `sidekick fetch`, `import` and `dataset` commands: what they print and how they exit.

use super::dataset::{self, DatasetOptions};
use super::dpo::{EnginePairModel, RejectedCache};
use super::fetch::{self, Bar, Progress, Silent};
use super::import;
use super::HistoryAccess;
use crate::config::Config;
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

/// Bad input the user can fix: one line, exit 2 (as for configuration).
const EXIT_INPUT: u8 = 2;

pub async fn fetch(config: &Config, quiet: bool) -> anyhow::Result<ExitCode> {
    let access = HistoryAccess::open(config).await?;
    let mut bar;
    let mut silent = Silent;
    let progress: &mut dyn Progress = if !quiet && std::io::stderr().is_terminal() {
        bar = Bar::new();
        &mut bar
    } else {
        &mut silent
    };
    let token = config.secrets.discord_token.as_deref();
    match fetch::run(&config.discord.api_base, token, &access, progress).await {
        Ok(report) => {
            if !quiet {
                for c in &report.channels {
                    match &c.skipped {
                        Some(why) => eprintln!("  #{} ({}): skipped, {why}", c.name, c.channel),
                        None => eprintln!("  #{} ({}): {} fetched, {} kept", c.name, c.channel, c.fetched, c.admitted.kept),
                    }
                }
            }
            println!("{}", report.summary());
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ (fetch::FetchError::NoToken | fetch::FetchError::Rest(super::rest::RestError::Unauthorized))) => {
            eprintln!("sidekick: {e}");
            Ok(ExitCode::from(EXIT_INPUT))
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn import(config: &Config, path: &Path) -> anyhow::Result<ExitCode> {
    let files = match import::files(path) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("sidekick: {e}");
            return Ok(ExitCode::from(EXIT_INPUT));
        }
    };
    let access = HistoryAccess::open(config).await?;
    let started = std::time::Instant::now();
    let (mut messages, mut admitted, mut failed) = (0, sidekick_actors::history::Admitted::default(), 0);
    for file in &files {
        // Read and checked whole before anything of it is written.
        let read = tokio::task::spawn_blocking({
            let file = file.clone();
            move || import::read(&file)
        })
        .await?;
        let (channel, offered) = match read {
            Ok(ok) => ok,
            Err(e) => {
                eprintln!("sidekick: {e}");
                failed += 1;
                continue;
            }
        };
        let report = import::import(&access, file, channel, offered).await?;
        eprintln!(
            "  {}: {} messages, {} kept, {} filtered, {} refused",
            file.display(),
            report.messages,
            report.admitted.kept,
            report.admitted.filtered,
            report.admitted.refused
        );
        messages += report.messages;
        admitted += report.admitted;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "Imported {messages} messages from {} file(s) in {seconds:.2} s ({:.0} messages/s): kept {}, filtered {} (bots, system messages, bare links), refused {} (opted out or not allowlisted).",
        files.len() - failed,
        messages as f64 / seconds.max(1e-9),
        admitted.kept,
        admitted.filtered,
        admitted.refused
    );
    Ok(if failed > 0 { ExitCode::from(EXIT_INPUT) } else { ExitCode::SUCCESS })
}

pub async fn dataset(config: &Config, seed: Option<u64>, pairs: bool) -> anyhow::Result<ExitCode> {
    let access = HistoryAccess::open(config).await?;
    let global = access.governance().await?;
    let history = access.snapshot(&config.storage.path).await?;
    // Pairs of the served model's own replies: only when pairs are asked for.
    let feedback_pairs = if pairs { access.preference_pairs().await? } else { Vec::new() };
    if history.is_empty() {
        eprintln!("sidekick: {}", dataset::DatasetError::Empty);
        return Ok(ExitCode::from(EXIT_INPUT));
    }
    let options = DatasetOptions {
        seed: seed.unwrap_or(config.dataset.seed),
        rules: config.dataset.windows(),
        system_prompt: config.chat.system_prompt.clone(),
        pairs,
        rejected_tokens: config.dataset.rejected_max_tokens,
    };
    let started = std::time::Instant::now();
    let engine = crate::llama::LlamaEngine::start(crate::daemon::engine_config(config), Default::default())?;
    let sha256 = super::dpo::file_sha256(&config.model.path)?;
    let mut model = EnginePairModel::new(std::sync::Arc::new(engine), config.generation, sha256);
    let mut cache = RejectedCache::open(&config.storage.path.join("dataset-cache").join("rejected.jsonl"));
    let dir = config.storage.path.join("dataset");
    let built = tokio::task::spawn_blocking(move || {
        let mut built = dataset::build(history, &global, &options, &mut model, &mut cache)?;
        built.manifest.stats.feedback_pairs = feedback_pairs.len();
        built.feedback_pairs = feedback_pairs;
        dataset::write(&built, &dir)?;
        model.engine.shutdown(std::time::Duration::from_secs(5));
        Ok::<_, dataset::DatasetError>(built)
    })
    .await?;
    match built {
        Ok(built) => {
            print!("{}", dataset::show(&built.manifest.stats));
            println!("Dataset written to {} in {:.1} s.", config.storage.path.join("dataset").display(), started.elapsed().as_secs_f64());
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ (dataset::DatasetError::Empty | dataset::DatasetError::NothingAllowed(_) | dataset::DatasetError::TooShort(_))) => {
            eprintln!("sidekick: {e}");
            Ok(ExitCode::from(EXIT_INPUT))
        }
        Err(e) => Err(e.into()),
    }
}
