//! Durations as people read them in answers and status lines.

use std::time::Duration;

/// `42s`, `3m 05s`, `2h 07m`, `4d 03h`.
pub fn duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_range_shows_its_two_largest_units() {
        let d = |s| duration(Duration::from_secs(s));
        assert_eq!(d(42), "42s");
        assert_eq!(d(185), "3m 05s");
        assert_eq!(d(7620), "2h 07m");
        assert_eq!(d(356_400), "4d 03h");
    }
}
