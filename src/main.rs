//! `sidekick`: chat on the terminal, or run the Discord daemon.

use clap::{Parser, Subcommand};
use sidekick::config::Config;
use sidekick::control::{self, ControlServer, Request, Response};
use sidekick::daemon::Daemon;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "sidekick", version, about = "A self-hosted Discord bot that chats through a local LLM")]
struct Cli {
    /// Configuration file (a missing default file means built-in defaults).
    #[arg(long, global = true, default_value = "sidekick.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Chat with the model on this terminal (or through a pipe: one message a line).
    Chat {
        /// Print the exact prompt given to the model before each reply.
        #[arg(long)]
        show_prompt: bool,
        /// Also serve /metrics while chatting.
        #[arg(long)]
        metrics: bool,
    },
    /// Run the Discord bot as a daemon (needs DISCORD_TOKEN).
    Run,
    /// Show whether the daemon is up: model, uptime, last reply, queue, adapter.
    Status,
    /// Copy the store, the vector index and the adapters to DIR (a new folder), consistently,
    /// whether or not the daemon is running.
    Backup { dir: PathBuf },
    /// Read the allowlisted channels' history from Discord into the store (only what is new
    /// since the last fetch); safe to run while the daemon runs, and to kill and run again.
    Fetch {
        /// No progress or per-channel lines; only the summary.
        #[arg(long)]
        quiet: bool,
    },
    /// Add DiscordChatExporter JSON exports (a file, or a folder of them) to the history.
    Import { path: PathBuf },
    /// Build the training set from the history under <storage.path>/dataset/ and print its
    /// statistics.
    Dataset {
        /// Overrides dataset.seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Leave out preference pairs (they need the model to write rejected replies).
        #[arg(long)]
        no_pairs: bool,
    },
    /// Train the personality adapter (SFT, then DPO) on the dataset, on this machine's CPU; it
    /// is served if it passes the perplexity gate. A killed run resumes where it stopped.
    Train,
    /// Serve the web console (console.listen): start, stop and tune the bot, watch its logs
    /// and statistics, from a browser. Prints the login URL the first time.
    Console {
        /// Start the bot at once.
        #[arg(long)]
        start: bool,
    },
    /// Compare the base model and adapters on the held-out split: perplexity, style, length,
    /// vocabulary and detectability, in <storage.path>/eval/report.md.
    Eval {
        /// An adapter to evaluate (repeatable); none means the served personality.
        #[arg(long = "adapter")]
        adapters: Vec<PathBuf>,
    },
}

/// Exit code for a configuration the user must fix.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    load_dotenv(&cli.config);
    init_logging();
    let explicit = std::env::args().any(|a| a == "--config" || a.starts_with("--config="));
    let env: Vec<(String, String)> = std::env::vars().collect();
    let config = match Config::load(&cli.config, explicit, &env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sidekick: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let needs_model =
        matches!(cli.command, Command::Chat { .. } | Command::Run | Command::Dataset { .. } | Command::Train | Command::Eval { .. });
    if let Err(e) = config.check_model_file().map_err(|e| e.to_string()).or_else(|e| if needs_model { Err(e) } else { Ok(()) }) {
        eprintln!("sidekick: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    // Before any thread starts: candle reads this once, and training must leave the decoder
    // its core. A standalone `train` has the machine to itself, but spreads its batch over the
    // cores one whole example per thread (`train.threads`), so each thread's element-wise ops
    // run on that thread: candle's shared element-wise pool would serialise them.
    let candle_threads = if matches!(cli.command, Command::Train) { 1 } else { config.rl.threads };
    sidekick_trainer::threads::limit_candle_threads(candle_threads);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Chat { show_prompt, metrics } => chat(&config, show_prompt, metrics).await,
            Command::Run => run(&config).await,
            Command::Status => status(&config).await,
            Command::Backup { dir } => backup(&config, &dir).await,
            Command::Fetch { quiet } => sidekick::history::commands::fetch(&config, quiet).await,
            Command::Import { path } => sidekick::history::commands::import(&config, &path).await,
            Command::Dataset { seed, no_pairs } => sidekick::history::commands::dataset(&config, seed, !no_pairs).await,
            Command::Train => tokio::task::block_in_place(|| sidekick::train::commands::train(&config)),
            Command::Console { start } => console(&config, start).await,
            Command::Eval { adapters } => tokio::task::block_in_place(|| sidekick::train::commands::eval(&config, &adapters)),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sidekick: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `.env` before logging starts, so `SIDEKICK_LOG` in it counts: the one beside the config
/// file, then the working directory's. Neither overrides what the environment already says.
fn load_dotenv(config_file: &std::path::Path) {
    if let Some(dir) = config_file.parent() {
        let _ = dotenvy::from_path(dir.join(".env"));
    }
    let _ = dotenvy::dotenv();
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SIDEKICK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,llama-cpp-2=off"));
    // Logs go to stderr so stdout carries only the conversation.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

async fn chat(config: &Config, show_prompt: bool, metrics: bool) -> anyhow::Result<ExitCode> {
    if metrics {
        if let Some(addr) = config.metrics_addr() {
            sidekick::metrics_http::serve(addr)?;
        }
    }
    let stop = sidekick::signals::shutdown_requested()?;
    let mut daemon = Daemon::start(config).await?;
    let stdin = tokio::io::BufReader::new(tokio::io::stdin());
    let options = sidekick::console::ConsoleOptions { show_prompt };
    let stopping = {
        // A signal drains the tree while the console prints the reply in progress.
        let root = daemon.root.clone();
        let mut stop = stop.clone();
        let grace = std::time::Duration::from_secs_f64(config.shutdown.grace_seconds);
        tokio::spawn(async move {
            if stop.wait_for(|s| *s).await.is_ok() {
                let _ = root.call(|port| sidekick_actors::RootMsg::Drain(grace, port), Some(grace * 2)).await;
            }
        })
    };
    let root = daemon.root.clone();
    let ended = tokio::select! {
        outcome = sidekick::console::run(&root, stdin, std::io::stdout(), stop, options) => {
            outcome?;
            None
        }
        // The tree gave up: there is nobody left to answer.
        request = daemon.ended() => Some(request),
    };
    stopping.abort();
    daemon.shutdown().await?;
    Ok(match ended {
        None => ExitCode::SUCCESS,
        Some(request) => {
            eprintln!("sidekick: {}", request.why);
            ExitCode::from(request.code)
        }
    })
}

async fn run(config: &Config) -> anyhow::Result<ExitCode> {
    if config.secrets.discord_token.is_none() {
        eprintln!(
            "sidekick: DISCORD_TOKEN is not set; put `DISCORD_TOKEN=...` in .env (see README, \"Running on Discord\"), or try `sidekick chat` which needs no token"
        );
        return Ok(ExitCode::from(EXIT_CONFIG));
    }
    if let Some(addr) = config.metrics_addr() {
        sidekick::metrics_http::serve(addr)?;
    }
    let mut stop = sidekick::signals::shutdown_requested()?;
    let mut daemon = Daemon::start(config).await?;
    let control = match ControlServer::start(config, daemon.root.clone(), daemon.store.clone(), daemon.gateway_health.clone()).await {
        Ok(control) => control,
        Err(e) => {
            daemon.shutdown().await?;
            return Err(e);
        }
    };
    let connected = sidekick::discord::supervised(config, daemon.root.clone(), daemon.gateway_health.clone(), daemon.service.clone()).await;
    match connected {
        Ok(()) => {}
        Err(e) => {
            control.stop();
            daemon.shutdown().await?;
            eprintln!("sidekick: {e}");
            return Ok(ExitCode::from(e.exit_code()));
        }
    }
    eprintln!("sidekick: running on Discord; SIGTERM or Ctrl-C stops it");
    // Until a signal, or until the bot cannot go on: its tree gave up (the gateway child
    // among others), or Discord closed the connection for good, or stayed unreachable too
    // long. Then systemd decides by the code.
    let ended = tokio::select! {
        _ = stop.wait_for(|s| *s) => None,
        request = daemon.ended() => Some(request),
    };
    // The drain closes the connection first (no new messages), then lets replies finish.
    control.stop();
    daemon.shutdown().await?;
    Ok(match ended {
        None => ExitCode::SUCCESS,
        Some(request) => {
            eprintln!("sidekick: {}", request.why);
            ExitCode::from(request.code)
        }
    })
}

async fn console(config: &Config, start: bool) -> anyhow::Result<ExitCode> {
    let program = std::env::current_exe()?;
    // Before the link is printed: whoever reads it may stop the console at once.
    let stop = sidekick::signals::shutdown_requested()?;
    let console = match sidekick::web::Console::bind(config, sidekick::web::ConsoleOptions { program, start }).await {
        Ok(console) => console,
        Err(e) => {
            eprintln!("sidekick: {e}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    if console.token_created {
        println!(
            "Sidekick console: open {} (this login link is shown once; the token is in {}/console.token)",
            console.login_url(),
            config.storage.path.display()
        );
    } else {
        println!("Sidekick console: {} (log in with the token in {}/console.token)", console.url(), config.storage.path.display());
    }
    console.serve(stop, std::time::Duration::from_secs_f64(config.shutdown.grace_seconds)).await?;
    Ok(ExitCode::SUCCESS)
}

/// LSB's "program is not running" status code, which service scripts understand.
const EXIT_NOT_RUNNING: u8 = 3;
/// LSB's "status unknown": the daemon may run, but this user may not ask it.
const EXIT_STATUS_UNKNOWN: u8 = 4;

async fn status(config: &Config) -> anyhow::Result<ExitCode> {
    match control::ask(&control::socket_path(config), &Request::Status).await {
        Ok(Response::Status(s)) => {
            println!("{}", control::show(&s));
            Ok(ExitCode::SUCCESS)
        }
        Ok(Response::Error(e)) => anyhow::bail!("the daemon could not tell: {e}"),
        Ok(_) => anyhow::bail!("the daemon gave an unexpected answer"),
        Err(e @ control::AskError::NotRunning(_)) => {
            println!("{e}");
            Ok(ExitCode::from(EXIT_NOT_RUNNING))
        }
        Err(e @ control::AskError::PermissionDenied(_)) => {
            eprintln!("sidekick: {e}");
            Ok(ExitCode::from(EXIT_STATUS_UNKNOWN))
        }
        Err(e) => Err(e.into()),
    }
}

async fn backup(config: &Config, dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    let dir = std::path::absolute(dir)?;
    let report = match control::ask(
        &control::socket_path(config),
        &Request::Backup { dir: dir.clone(), seen: sidekick::backup::SeenFolder::of(&dir) },
    )
    .await
    {
        Ok(Response::Backup(report)) => report,
        Ok(Response::Error(e)) => anyhow::bail!("backup failed: {e}"),
        Ok(_) => anyhow::bail!("the daemon gave an unexpected answer"),
        // Nobody holds the store: copy it ourselves.
        Err(control::AskError::NotRunning(_)) => {
            let store = sidekick::store::FjallStore::open(&config.storage.path)?;
            sidekick::backup::take(config, &store, &dir)?
        }
        Err(e) => return Err(e.into()),
    };
    println!(
        "backup written to {}: {} store records, index files [{}], adapter files [{}]",
        report.dir.display(),
        report.store_records,
        report.index_files.join(", "),
        report.adapter_files.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}
