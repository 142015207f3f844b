//! The trainer against llama.cpp (the engine that serves the model), on the real model.
//! Run with `--release`; the tests share one llama backend, base model and F32 copy.

mod common;

use common::*;
use sidekick_trainer::{LoraConfig, Sample, Trainer};

fn prompts() -> Vec<Vec<u32>> {
    vec![
        tokenize("The capital of France is Paris, and the capital of Germany is"),
        tokenize(&chatml("What is the tallest mountain in the world?")),
        tokenize("fn main() {\n    let v = vec![1, 2, 3];\n    println!(\"{:?}\", v"),
    ]
}

/// 1. A fresh adapter (B = 0) reproduces llama.cpp's next-token log-probs.
#[test]
fn equivalence_with_llama_cpp() {
    let trainer = Trainer::new(base(), LoraConfig::default(), 1).unwrap();
    for tokens in prompts() {
        let ours = trainer.next_token_logprobs(&tokens).unwrap();
        // Exact weights: llama.cpp on the trainer's own F32 copy, whole vocabulary.
        let exact = llama_logprobs(f32_copy(), None, &tokens);
        let err = max_abs_diff(&ours, &exact);
        // The served Q4_1 file: llama.cpp quantizes activations to Q8_1 there, so only
        // the top of the distribution is comparable.
        let served = llama_logprobs(&served(), None, &tokens);
        let err_q_top = max_abs_diff_topk(&ours, &served, 10);
        let err_q_all = max_abs_diff(&ours, &served);
        let last = tokens.len() - 1;
        println!(
            "{} tokens: F32 copy max|Δ| (all vocab, all positions) = {err:.2e}; Q4_1 max|Δ| top-10 = {err_q_top:.3}, all vocab = {err_q_all:.3}; top-1 {} vs {}",
            tokens.len(),
            argmax(&ours[last]),
            argmax(&served[last])
        );
        assert!(err < 1e-3, "F32 copy: max |Δ log p| = {err}");
        assert!(err_q_top < 1.5, "Q4_1: max |Δ log p| over top-10 = {err_q_top}");
        assert_eq!(argmax(&ours[last]), argmax(&served[last]), "top-1 at the last position");
    }
}

fn trained(steps: usize, batch: &[Sample], lr: f32) -> Trainer {
    let cfg = LoraConfig { learning_rate: lr, ..LoraConfig::default() };
    let mut trainer = Trainer::new(base(), cfg, 7).unwrap();
    for _ in 0..steps {
        let r = trainer.step(batch).unwrap();
        println!(
            "step {}: loss {:.4} adv {:.3} grad {:.3} baseline {:.3} ({} tokens, {:.2}s)",
            r.step, r.loss, r.mean_advantage, r.grad_norm, r.baseline, r.tokens, r.seconds
        );
    }
    trainer
}

/// 2. The written adapter loads in llama.cpp, changes its output, and llama.cpp agrees with
///    the trainer on the trained reply's log-prob; it also resumes in the trainer.
#[test]
fn adapter_loads_in_llama_cpp_and_matches() {
    let prompt = tokenize(&chatml("Say something nice."));
    let reply = tokenize("You are wonderful and I like you a lot!<|im_end|>");
    let trainer = trained(3, &[Sample { prompt: prompt.clone(), reply: reply.clone(), reward: 1.0 }], 1e-3);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("adapter.gguf");
    trainer.write_adapter(&path).unwrap();

    let all: Vec<u32> = prompt.iter().chain(&reply).copied().collect();
    let base_lp = llama_logprobs(f32_copy(), None, &all);
    let lora_lp = llama_logprobs(f32_copy(), Some(&path), &all);
    let changed = max_abs_diff(&base_lp, &lora_lp);
    let ours = trainer.reply_logprob(&prompt, &reply).unwrap();
    let theirs = llama_reply_logprob(f32_copy(), Some(&path), &prompt, &reply);
    let before = llama_reply_logprob(f32_copy(), None, &prompt, &reply);
    println!("adapter changes llama.cpp log-probs by up to {changed:.3}; reply log-prob: trainer {ours:.4}, llama.cpp {theirs:.4} (base {before:.4})");
    assert!(changed > 1e-2, "the adapter should change llama.cpp's output");
    // Each of the ~15 reply tokens agrees to ~1e-4 (test 1); 1e-2 on the sum leaves room
    // for LoRA's extra f32 matmuls while staying far below the trained change.
    assert!((ours - theirs).abs() < 1e-2, "trainer {ours} vs llama.cpp {theirs}");
    assert!((theirs - before).abs() > 10.0 * (ours - theirs).abs());

    // The served Q4_1 model accepts the same adapter (same tensor shapes).
    let served = llama_logprobs(&served(), Some(&path), &all);
    assert!(served.iter().flatten().all(|x| x.is_finite()));

    // Resume: the reloaded trainer computes the same thing and keeps its state.
    let resumed = Trainer::load_adapter(base(), LoraConfig::default(), &path).unwrap();
    assert_eq!(resumed.state(), trainer.state());
    let again = resumed.reply_logprob(&prompt, &reply).unwrap();
    assert!((again - ours).abs() < 1e-4, "resumed {again} vs {ours}");
}

/// 3. Rewarding A and punishing B moves llama.cpp's log-probs the right way.
#[test]
fn learning_shows_in_llama_cpp() {
    let prompt = tokenize(&chatml("What is the capital of France?"));
    let a = tokenize("The capital of France is Paris.<|im_end|>");
    let b = tokenize("I do not know, ask someone else.<|im_end|>");
    let batch = [
        Sample { prompt: prompt.clone(), reply: a.clone(), reward: 1.0 },
        Sample { prompt: prompt.clone(), reply: b.clone(), reward: -1.0 },
    ];
    let trainer = trained(4, &batch, 1e-3);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("adapter.gguf");
    trainer.write_adapter(&path).unwrap();
    let served = &served();
    let (a0, a1) = (llama_reply_logprob(served, None, &prompt, &a), llama_reply_logprob(served, Some(&path), &prompt, &a));
    let (b0, b1) = (llama_reply_logprob(served, None, &prompt, &b), llama_reply_logprob(served, Some(&path), &prompt, &b));
    println!("served Q4_1 via llama.cpp: log p(A) {a0:.3} -> {a1:.3} ({:+.3}); log p(B) {b0:.3} -> {b1:.3} ({:+.3})", a1 - a0, b1 - b0);
    assert!(a1 > a0 + 0.5, "A should become more likely: {a0} -> {a1}");
    assert!(b1 < b0 - 0.5, "B should become less likely: {b0} -> {b1}");
}
