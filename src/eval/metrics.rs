//! How close generated replies are to real ones: pure functions, tested here.

use std::collections::{HashMap, HashSet};

/// Mean of the row-wise cosines of two equally long lists of vectors.
pub fn mean_cosine(a: &[Vec<f32>], b: &[Vec<f32>]) -> f64 {
    let cos = |x: &[f32], y: &[f32]| {
        let dot: f64 = x.iter().zip(y).map(|(p, q)| f64::from(*p) * f64::from(*q)).sum();
        let nx: f64 = x.iter().map(|p| f64::from(*p).powi(2)).sum::<f64>().sqrt();
        let ny: f64 = y.iter().map(|q| f64::from(*q).powi(2)).sum::<f64>().sqrt();
        if nx == 0.0 || ny == 0.0 {
            0.0
        } else {
            dot / (nx * ny)
        }
    };
    let n = a.len().min(b.len());
    (0..n).map(|i| cos(&a[i], &b[i])).sum::<f64>() / n.max(1) as f64
}

/// Earth mover's distance between two empirical distributions.
pub fn wasserstein(a: &[f64], b: &[f64]) -> f64 {
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    // The integral of |F_a − F_b| over the merged support.
    let mut points: Vec<f64> = a.iter().chain(&b).copied().collect();
    points.sort_by(f64::total_cmp);
    let cdf = |v: &[f64], x: f64| v.partition_point(|y| *y <= x) as f64 / v.len().max(1) as f64;
    points.windows(2).map(|w| (cdf(&a, w[0]) - cdf(&b, w[0])).abs() * (w[1] - w[0])).sum()
}

/// The Kolmogorov-Smirnov statistic: the largest gap between the two CDFs.
pub fn ks(a: &[f64], b: &[f64]) -> f64 {
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let cdf = |v: &[f64], x: f64| v.partition_point(|y| *y <= x) as f64 / v.len().max(1) as f64;
    a.iter().chain(&b).map(|x| (cdf(&a, *x) - cdf(&b, *x)).abs()).fold(0.0, f64::max)
}

pub fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// Words as the vocabulary counts them: lower case, letters and digits (and `'`).
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\'')).filter(|w| !w.is_empty()).map(|w| w.to_lowercase()).collect()
}

/// Jaccard overlap of the `k` most frequent words of two sets of texts (ties by the word).
pub fn top_words_jaccard(a: &[String], b: &[String], k: usize) -> f64 {
    let top = |texts: &[String]| -> HashSet<String> {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for t in texts {
            for w in words(t) {
                *counts.entry(w).or_default() += 1;
            }
        }
        let mut ranked: Vec<(String, usize)> = counts.into_iter().collect();
        ranked.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(&y.0)));
        ranked.into_iter().take(k).map(|(w, _)| w).collect()
    };
    let (x, y) = (top(a), top(b));
    let union = x.union(&y).count();
    if union == 0 {
        return 0.0;
    }
    x.intersection(&y).count() as f64 / union as f64
}

/// Distinct-2: unique word bigrams over all word bigrams.
pub fn distinct_2(texts: &[String]) -> f64 {
    let mut all = 0usize;
    let mut unique = HashSet::new();
    for t in texts {
        let w = words(t);
        for pair in w.windows(2) {
            all += 1;
            unique.insert((pair[0].clone(), pair[1].clone()));
        }
    }
    unique.len() as f64 / all.max(1) as f64
}

/// Area under the ROC curve of `scores` for `labels` (true = positive), ties counted half.
pub fn auc(scores: &[f64], labels: &[bool]) -> f64 {
    let pos: Vec<f64> = scores.iter().zip(labels).filter(|(_, l)| **l).map(|(s, _)| *s).collect();
    let neg: Vec<f64> = scores.iter().zip(labels).filter(|(_, l)| !**l).map(|(s, _)| *s).collect();
    if pos.is_empty() || neg.is_empty() {
        return 0.5;
    }
    let mut wins = 0.0;
    for p in &pos {
        for n in &neg {
            wins += if p > n {
                1.0
            } else if p == n {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / (pos.len() * neg.len()) as f64
}

/// Logistic regression (L2, full-batch gradient descent), returning a scorer.
fn fit_logistic(x: &[Vec<f32>], y: &[bool]) -> impl Fn(&[f32]) -> f64 {
    let dim = x.first().map_or(0, Vec::len);
    let (mut w, mut b) = (vec![0f64; dim], 0f64);
    let (rate, l2) = (0.5, 1e-3);
    for _ in 0..300 {
        let mut gw = vec![0f64; dim];
        let mut gb = 0f64;
        for (xi, yi) in x.iter().zip(y) {
            let z: f64 = b + xi.iter().zip(&w).map(|(a, c)| f64::from(*a) * c).sum::<f64>();
            let err = 1.0 / (1.0 + (-z).exp()) - f64::from(u8::from(*yi));
            gb += err;
            for (g, a) in gw.iter_mut().zip(xi) {
                *g += err * f64::from(*a);
            }
        }
        let n = x.len().max(1) as f64;
        for (wi, g) in w.iter_mut().zip(&gw) {
            *wi -= rate * (g / n + l2 * *wi);
        }
        b -= rate * gb / n;
    }
    move |xi: &[f32]| b + xi.iter().zip(&w).map(|(a, c)| f64::from(*a) * c).sum::<f64>()
}

/// How well a classifier tells generated from real by their embeddings: the AUC of a
/// logistic regression over `folds`-fold cross-validation (0.5: indistinguishable).
pub fn detectability_auc(real: &[Vec<f32>], generated: &[Vec<f32>], folds: usize) -> f64 {
    let x: Vec<Vec<f32>> = real.iter().chain(generated).cloned().collect();
    let y: Vec<bool> = real.iter().map(|_| false).chain(generated.iter().map(|_| true)).collect();
    let mut scores = vec![0f64; x.len()];
    for fold in 0..folds {
        let test = |i: usize| i % folds == fold;
        let train_x: Vec<Vec<f32>> = (0..x.len()).filter(|i| !test(*i)).map(|i| x[i].clone()).collect();
        let train_y: Vec<bool> = (0..x.len()).filter(|i| !test(*i)).map(|i| y[i]).collect();
        let model = fit_logistic(&train_x, &train_y);
        for i in (0..x.len()).filter(|i| test(*i)) {
            scores[i] = model(&x[i]);
        }
    }
    auc(&scores, &y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_between_length_distributions() {
        assert_eq!(wasserstein(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]), 0.0);
        assert!((wasserstein(&[1.0, 2.0, 3.0], &[2.0, 3.0, 4.0]) - 1.0).abs() < 1e-12, "shifted by one");
        assert_eq!(ks(&[1.0, 2.0], &[1.0, 2.0]), 0.0);
        assert_eq!(ks(&[1.0, 2.0], &[3.0, 4.0]), 1.0);
        assert!((ks(&[1.0, 2.0, 3.0, 4.0], &[3.0, 4.0, 5.0, 6.0]) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn vocabulary_overlap_and_variety() {
        let a = vec!["lol that's wild".to_string(), "lol no".to_string()];
        let b = vec!["That is quite interesting.".to_string()];
        assert_eq!(top_words_jaccard(&a, &a, 500), 1.0);
        assert_eq!(top_words_jaccard(&a, &b, 500), 0.0);
        assert_eq!(distinct_2(&["a b a b".to_string()]), 2.0 / 3.0);
        assert_eq!(words("Don't PANIC, it's 42!"), ["don't", "panic", "it's", "42"]);
    }

    #[test]
    fn a_classifier_tells_apart_what_differs_and_not_what_does_not() {
        let make = |shift: f32, n: usize| {
            (0..n).map(|i| vec![((i * 7919) % 13) as f32 / 13.0 + shift, ((i * 104_729) % 11) as f32 / 11.0]).collect::<Vec<_>>()
        };
        let separable = detectability_auc(&make(0.0, 40), &make(2.0, 40), 5);
        assert!(separable > 0.95, "{separable}");
        let same = detectability_auc(&make(0.0, 40), &make(0.0, 40), 5);
        assert!((same - 0.5).abs() < 0.2, "{same}");
        assert_eq!(auc(&[0.9, 0.1], &[true, false]), 1.0);
        assert_eq!(auc(&[0.5, 0.5], &[true, false]), 0.5);
        assert!((mean_cosine(&[vec![1.0, 0.0]], &[vec![0.0, 2.0]])).abs() < 1e-12);
    }
}
