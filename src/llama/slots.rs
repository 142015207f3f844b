//! Which sequence a job runs in, and how much of its prompt is already in the KV cache.
//! Pure bookkeeping over token lists; the engine applies the decisions to llama.cpp.

/// Length of the common prefix of two token lists.
pub fn common_prefix<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Where a job's cached prefix comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// Keep the first `n` tokens already in the job's own sequence.
    Own(usize),
    /// Drop the job's sequence and share the first `n` tokens of sequence `from`.
    Copy { from: usize, n: usize },
}

/// Picks the best cached prefix for `prompt` in sequence `own`, given what every sequence
/// holds. At least one token is always left to decode, so the model produces logits.
pub fn plan_reuse<T: PartialEq>(prompt: &[T], own: usize, cached: &[&[T]]) -> Reuse {
    let limit = prompt.len().saturating_sub(1);
    let own_n = common_prefix(prompt, cached[own]).min(limit);
    let best_other = cached
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != own)
        .map(|(i, c)| (i, common_prefix(prompt, c).min(limit)))
        .max_by_key(|(i, n)| (*n, std::cmp::Reverse(*i)));
    match best_other {
        Some((from, n)) if n > own_n => Reuse::Copy { from, n },
        _ => Reuse::Own(own_n),
    }
}

/// Picks the idle slot for a job with cache key `key`: the one that last served the same key,
/// otherwise the least recently used. `slots` are (key, last_used, busy).
pub fn choose_slot(key: &str, slots: &[(Option<&str>, u64, bool)]) -> Option<usize> {
    let idle = || slots.iter().enumerate().filter(|(_, s)| !s.2);
    idle().find(|(_, s)| s.0 == Some(key)).or_else(|| idle().min_by_key(|(_, s)| s.1)).map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuse_prefers_the_longest_prefix_and_leaves_one_token() {
        let root: &[u32] = &[1, 2, 3];
        let own: &[u32] = &[1, 2, 9];
        let other: &[u32] = &[1, 2, 3, 4, 5];
        assert_eq!(plan_reuse(&[1, 2, 3, 4, 7], 1, &[root, own, other]), Reuse::Copy { from: 2, n: 4 });
        assert_eq!(plan_reuse(&[1, 2, 9, 9], 1, &[root, own, other]), Reuse::Own(3));
        // A prompt identical to the cache still decodes its last token.
        assert_eq!(plan_reuse(&[1, 2, 9], 1, &[root, own, other]), Reuse::Own(2));
        assert_eq!(plan_reuse::<u32>(&[5], 1, &[root, own]), Reuse::Own(0));
    }

    #[test]
    fn slots_go_back_to_their_channel_or_else_the_least_recently_used() {
        let slots = [(Some("a"), 5, false), (Some("b"), 1, false), (None, 3, true)];
        assert_eq!(choose_slot("a", &slots), Some(0));
        assert_eq!(choose_slot("c", &slots), Some(1));
        assert_eq!(choose_slot("c", &[(None, 0, true)]), None);
    }
}
