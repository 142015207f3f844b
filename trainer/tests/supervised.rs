//! SFT, DPO, checkpoints and adapters served together, against llama.cpp on the real model.
//! Run with `--release`.

mod common;

use common::*;
use sidekick_trainer::{combine_adapters, Example, LoraConfig, Preference, Sample, Trainer};
use std::sync::Arc;

fn small() -> LoraConfig {
    LoraConfig { rank: 4, alpha: 8.0, ..LoraConfig::default() }
}

/// SFT makes the example's reply more likely, in llama.cpp too.
#[test]
fn sft_learns_the_reply() {
    let prompt = tokenize(&chatml("anyone up?"));
    let reply = tokenize("yeah lol cant sleep<|im_end|>");
    let mut trainer = Trainer::new(base(), small(), 1).unwrap();
    let before = trainer.reply_logprob(&prompt, &reply).unwrap();
    let batch = [Example { prompt: prompt.clone(), reply: reply.clone(), weight: 1.0 }];
    let losses: Vec<f32> = (0..4).map(|_| trainer.sft_step(&batch, 2e-3).unwrap().loss).collect();
    let after = trainer.reply_logprob(&prompt, &reply).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sft.gguf");
    trainer.write_adapter(&path).unwrap();
    let served = llama_reply_logprob(f32_copy(), Some(&path), &prompt, &reply);
    println!("SFT losses {losses:?}; log p(reply) {before:.3} -> {after:.3}, llama.cpp {served:.3}");
    assert!(losses[3] < losses[0], "the loss should fall: {losses:?}");
    assert!(after > before + 1.0, "{before} -> {after}");
    assert!((served - after).abs() < 1e-2, "llama.cpp {served} vs trainer {after}");
}

/// DPO widens the margin of the chosen reply over the rejected one, from the reference.
#[test]
fn dpo_prefers_the_chosen_reply() {
    let prompt = tokenize(&chatml("what do you think of vim?"));
    let chosen = tokenize("vim is life<|im_end|>");
    let rejected = tokenize("As an AI language model, I do not have opinions.<|im_end|>");
    let mut trainer = Trainer::new(base(), small(), 2).unwrap();
    let (rc, rr) = (trainer.reply_logprob(&prompt, &chosen).unwrap(), trainer.reply_logprob(&prompt, &rejected).unwrap());
    let pair = Preference {
        prompt: prompt.clone(),
        chosen: chosen.clone(),
        rejected: rejected.clone(),
        reference_chosen: rc,
        reference_rejected: rr,
        weight: 1.0,
    };
    let first = trainer.dpo_step(std::slice::from_ref(&pair), 0.1, 2e-3).unwrap().loss;
    for _ in 0..3 {
        trainer.dpo_step(std::slice::from_ref(&pair), 0.1, 2e-3).unwrap();
    }
    let (c, r) = (trainer.reply_logprob(&prompt, &chosen).unwrap(), trainer.reply_logprob(&prompt, &rejected).unwrap());
    println!("DPO: first loss {first:.4} (ln 2 = 0.6931); margin {:.3} -> {:.3}", rc - rr, c - r);
    assert!((first - std::f32::consts::LN_2).abs() < 1e-3, "at the reference the loss is ln 2: {first}");
    assert!(c - r > rc - rr + 1.0, "margin {} -> {}", rc - rr, c - r);
}

/// A checkpoint restores the adapter and Adam's state exactly: the next steps are the same.
#[test]
fn a_checkpoint_resumes_exactly() {
    let prompt = tokenize(&chatml("ping"));
    let reply = tokenize("pong<|im_end|>");
    let batch = [Example { prompt: prompt.clone(), reply: reply.clone(), weight: 1.0 }];
    let mut straight = Trainer::new(base(), small(), 3).unwrap();
    straight.sft_step(&batch, 1e-3).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoint.safetensors");
    straight.save_checkpoint(&path).unwrap();
    let mut resumed = Trainer::load_checkpoint(base(), small(), &path).unwrap();
    for _ in 0..2 {
        let a = straight.sft_step(&batch, 1e-3).unwrap().loss;
        let b = resumed.sft_step(&batch, 1e-3).unwrap().loss;
        assert_eq!(a.to_bits(), b.to_bits(), "losses {a} vs {b}");
    }
    let (a, b) = (straight.reply_logprob(&prompt, &reply).unwrap(), resumed.reply_logprob(&prompt, &reply).unwrap());
    assert_eq!(a.to_bits(), b.to_bits());
}

/// A batch's examples run side by side on two threads, and the step is the same as on one:
/// the same losses, gradient norms and adapter, for SFT and for feedback (REINFORCE).
#[test]
fn two_threads_take_the_same_steps_as_one() {
    let pair = |q: &str, a: &str| (tokenize(&chatml(q)), tokenize(&format!("{a}<|im_end|>")));
    let pairs = [pair("ping", "pong"), pair("anyone up?", "yeah lol"), pair("best pizza?", "margherita"), pair("hi", "hey!")];
    let examples: Vec<Example> =
        pairs.iter().enumerate().map(|(i, (p, r))| Example { prompt: p.clone(), reply: r.clone(), weight: 1.0 + i as f32 }).collect();
    let samples: Vec<Sample> = pairs
        .iter()
        .enumerate()
        .map(|(i, (p, r))| Sample { prompt: p.clone(), reply: r.clone(), reward: [1.0, -1.0, 0.5, 0.0][i] })
        .collect();
    let mut one = Trainer::new(base(), small(), 4).unwrap();
    let mut two = Trainer::new(base(), LoraConfig { threads: 2, ..small() }, 4).unwrap();
    for step in 0..3 {
        let (a, b) = (one.sft_step(&examples, 1e-3).unwrap(), two.sft_step(&examples, 1e-3).unwrap());
        assert_eq!(
            (a.loss.to_bits(), a.grad_norm.to_bits(), a.tokens),
            (b.loss.to_bits(), b.grad_norm.to_bits(), b.tokens),
            "SFT step {step}"
        );
        let (a, b) = (one.step(&samples).unwrap(), two.step(&samples).unwrap());
        assert_eq!(
            (a.loss.to_bits(), a.grad_norm.to_bits(), a.baseline.to_bits()),
            (b.loss.to_bits(), b.grad_norm.to_bits(), b.baseline.to_bits()),
            "RL step {step}"
        );
        assert!(a.grad_norm > 0.0);
    }
    let (p, r) = &pairs[0];
    let (a, b) = (one.reply_logprob(p, r).unwrap(), two.reply_logprob(p, r).unwrap());
    assert!((a - b).abs() < 1e-4, "the adapters differ: {a} vs {b}");
}

/// The daemon serves the personality and the feedback adapter together (each at scale 1, in
/// one combined file); the feedback trainer's frozen weights are the base with the
/// personality folded in. A reply's log-prob from llama.cpp with both equals the trainer's.
#[test]
fn personality_and_feedback_served_together_match_the_trainer() {
    let prompt = tokenize(&chatml("how is the weather"));
    let voice = tokenize("raining again lol<|im_end|>");
    let liked = tokenize("sunny, finally<|im_end|>");
    let dir = tempfile::tempdir().unwrap();
    let (voice_path, feedback_path) = (dir.path().join("personality.gguf"), dir.path().join("feedback.gguf"));

    let mut personality = Trainer::new(base(), small(), 4).unwrap();
    for _ in 0..3 {
        personality.sft_step(&[Example { prompt: prompt.clone(), reply: voice.clone(), weight: 1.0 }], 2e-3).unwrap();
    }
    personality.write_adapter(&voice_path).unwrap();
    let merged = Arc::new(base().with_adapter(&voice_path, 1.0).unwrap());
    // Folded in, the personality predicts what its adapter does.
    let fresh = Trainer::new(merged.clone(), LoraConfig::default(), 5).unwrap();
    let (folded, adapted) = (fresh.reply_logprob(&prompt, &voice).unwrap(), personality.reply_logprob(&prompt, &voice).unwrap());
    assert!((folded - adapted).abs() < 1e-3, "folded {folded} vs adapter {adapted}");

    let mut feedback = Trainer::new(merged, LoraConfig::default(), 6).unwrap();
    for _ in 0..3 {
        feedback.step(&[Sample { prompt: prompt.clone(), reply: liked.clone(), reward: 1.0 }]).unwrap();
    }
    feedback.write_adapter(&feedback_path).unwrap();
    let ours = feedback.reply_logprob(&prompt, &liked).unwrap();
    let combined = dir.path().join("combined.gguf");
    combine_adapters(&[(&voice_path, 1.0), (&feedback_path, 1.0)], &combined).unwrap();
    let both = llama_reply_logprob(f32_copy(), Some(&combined), &prompt, &liked);
    let voice_only = llama_reply_logprob(f32_copy(), Some(&voice_path), &prompt, &liked);
    println!("log p(liked): personality only {voice_only:.4}; both adapters: llama.cpp {both:.4}, trainer {ours:.4}");
    assert!((ours - both).abs() < 1e-2, "trainer {ours} vs llama.cpp {both}");
    assert!((both - voice_only).abs() > 10.0 * (ours - both).abs(), "the feedback adapter should matter");
}
