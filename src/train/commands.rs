//! `sidekick train` and `sidekick eval`: what they print and how they exit.

use super::{Progress, TrainBar, TrainLog};
use crate::config::Config;
use crate::eval::{self, EvalProgress};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// Bad input the user can fix: one line, exit 2.
const EXIT_INPUT: u8 = 2;

pub fn train(config: &Config) -> anyhow::Result<ExitCode> {
    let mut bar;
    let mut log = TrainLog::new();
    let progress: &mut dyn Progress = if std::io::stderr().is_terminal() {
        bar = TrainBar::new();
        &mut bar
    } else {
        &mut log
    };
    match super::run(config, config.train.threads(), progress) {
        Ok(trained) => {
            let v = &trained.version;
            if let Some((sft, dpo)) = trained.resumed_at {
                println!("Resumed a killed run at SFT step {sft}, DPO step {dpo}.");
            }
            println!(
                "Trained {} in {:.0} s ({} SFT + {} DPO steps, last loss {:.3}): held-out perplexity {:.2}, {} {:.2}.",
                trained.path.display(),
                v.train_seconds,
                v.sft_steps,
                v.dpo_steps,
                v.final_loss,
                v.heldout_ppl,
                v.compared_with,
                v.compared_ppl
            );
            match &v.refused {
                None => println!("It passed the gate and is now the personality served; a running daemon serves it within seconds (it sets aside the feedback adapter trained on the old voice and learns a fresh one)."),
                Some(why) => println!("Not served: {why}. The served personality stays."),
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) if e.is_input() => {
            eprintln!("sidekick: {e}");
            Ok(ExitCode::from(EXIT_INPUT))
        }
        Err(e) => Err(e.into()),
    }
}

struct EvalBar(Option<indicatif::ProgressBar>);

impl EvalProgress for EvalBar {
    fn start(&mut self, label: &str, total: usize) {
        if let Some(bar) = self.0.take() {
            bar.finish_and_clear();
        }
        if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(total as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} replies · {eta} left").expect("a valid template"),
            );
            bar.set_message(format!("writing replies with {label}"));
            self.0 = Some(bar);
        } else {
            eprintln!("writing {total} replies with {label}");
        }
    }
    fn one(&mut self) {
        if let Some(bar) = &self.0 {
            bar.inc(1);
        }
    }
}

pub fn eval(config: &Config, adapters: &[PathBuf]) -> anyhow::Result<ExitCode> {
    if let Some(missing) = adapters.iter().find(|a| !a.is_file()) {
        eprintln!("sidekick: no adapter file {}", missing.display());
        return Ok(ExitCode::from(EXIT_INPUT));
    }
    let variants = eval::variants(config, adapters);
    let mut bar = EvalBar(None);
    let evaluation = match eval::run(config, &variants, &mut bar) {
        Ok(e) => e,
        Err(e @ (eval::EvalError::Data(_) | eval::EvalError::NoHeldout)) => {
            eprintln!("sidekick: {e}");
            return Ok(ExitCode::from(EXIT_INPUT));
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(b) = bar.0.take() {
        b.finish_and_clear();
    }
    let dir = eval::report_dir(config);
    eval::write_report(&evaluation, &dir)?;
    for f in &evaluation.variants {
        let margin = f.preference_margin.map_or_else(String::new, |m| format!(", held-out pair margin {m:.3}"));
        println!(
            "{}: perplexity {:.2}, style {:.3}, length {:.1} words (W1 {:.2}, KS {:.3}), top-500 Jaccard {:.3}, distinct-2 {:.3}, detectability AUC {:.3}{margin}",
            f.label, f.perplexity, f.style_similarity, f.mean_length, f.length_wasserstein, f.length_ks, f.top500_jaccard, f.distinct_2, f.detectability_auc
        );
    }
    println!(
        "Real replies: {:.1} words, distinct-2 {:.3}. Report: {}",
        evaluation.real_mean_length,
        evaluation.real_distinct_2,
        dir.join("report.md").display()
    );
    Ok(ExitCode::SUCCESS)
}
