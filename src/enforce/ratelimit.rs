//! `rate-limit`: at most `requests_per_minute` requests in any sliding
//! 60-second window, counted per pack. Only admitted requests are counted
//! (a refused one does not use up budget), so a window holds at most
//! `requests_per_minute` instants and memory stays bounded by the limit.

use super::{ActionKind, Verdict};
use crate::config::catalog::RateLimit;
use std::{
    collections::{BTreeMap, VecDeque},
    time::{Duration, Instant},
};

pub const WINDOW: Duration = Duration::from_secs(60);

/// The instants of admitted requests in the last window, by pack: the
/// gateway's only mutable policy state (`POST /admin/v1/reset` clears it).
#[derive(Debug, Default)]
pub struct Counters {
    windows: BTreeMap<String, VecDeque<Instant>>,
}

impl Counters {
    pub fn clear(&mut self) {
        self.windows.clear();
    }

    /// Requests admitted in the window ending at `now`, for `pack`.
    pub fn in_window(&mut self, pack: &str, now: Instant) -> usize {
        self.windows.get_mut(pack).map_or(0, |w| {
            slide(w, now);
            w.len()
        })
    }
}

fn slide(window: &mut VecDeque<Instant>, now: Instant) {
    while window
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW)
    {
        window.pop_front();
    }
}

#[derive(Debug, Clone)]
pub struct Limit {
    per_minute: u64,
}

impl Limit {
    pub fn new(settings: &RateLimit) -> Limit {
        Limit {
            per_minute: settings.requests_per_minute,
        }
    }

    /// Counts a request of `pack` at `now`, or says how long until the
    /// window has room.
    pub fn admit(&self, counters: &mut Counters, pack: &str, now: Instant) -> Result<(), Duration> {
        if !counters.windows.contains_key(pack) {
            counters.windows.insert(pack.to_owned(), VecDeque::new());
        }
        let Some(window) = counters.windows.get_mut(pack) else {
            return Ok(());
        };
        slide(window, now);
        if (window.len() as u64) < self.per_minute {
            window.push_back(now);
            return Ok(());
        }
        let oldest = window.front().copied().unwrap_or(now);
        Err(WINDOW.saturating_sub(now.saturating_duration_since(oldest)))
    }

    pub(super) fn verdict(&self, wait: Duration) -> Verdict {
        Verdict {
            action: ActionKind::RateLimited,
            detail: format!(
                "more than {} requests per minute; retry in {} ms",
                self.per_minute,
                wait.as_millis()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_slides() {
        let limit = Limit::new(&RateLimit {
            requests_per_minute: 2,
        });
        let mut counters = Counters::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(limit.admit(&mut counters, "p", at(0)), Ok(()));
        assert_eq!(limit.admit(&mut counters, "p", at(30)), Ok(()));
        assert_eq!(
            limit.admit(&mut counters, "p", at(45)),
            Err(Duration::from_secs(15))
        );
        // Another pack has its own budget.
        assert_eq!(limit.admit(&mut counters, "q", at(45)), Ok(()));
        // The first request leaves the window at 60 s.
        assert_eq!(limit.admit(&mut counters, "p", at(60)), Ok(()));
        assert_eq!(
            limit.admit(&mut counters, "p", at(61)),
            Err(Duration::from_secs(29))
        );
        assert_eq!(counters.in_window("p", at(61)), 2);
        assert_eq!(counters.in_window("p", at(200)), 0);
        counters.clear();
        assert_eq!(counters.in_window("q", at(46)), 0);
    }
}
