//! One registration scheduler for the whole fleet, not a timer per instance.
//!
//! Stages: [`Phases`] gives every instance a fixed offset within the interval (a random one
//! with splay, chosen from `--seed` and the instance's global index so that every worker and
//! every restart agrees; zero without splay) → the offsets are sorted once → [`drive`] walks
//! the sorted list cycle after cycle (deadline = epoch + k × interval + offset), sleeping only
//! until the next deadline, and wakes each due instance through its slot in [`Schedule`] →
//! the instance's own task publishes (see `instance.rs`). A wake-up for an instance that is not
//! serving yet (still connecting) waits in its slot, and several missed ones count as one.
//!
//! Cost: a `Notify` and 8 bytes of schedule per instance, one task and one timer for the fleet.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The instances' wake-up slots, indexed by the instance's index within this process.
pub(crate) struct Schedule {
    slots: Vec<Notify>,
}

impl Schedule {
    pub(crate) fn new(instances: u32) -> Schedule {
        Schedule {
            slots: (0..instances).map(|_| Notify::new()).collect(),
        }
    }

    /// The slot of local instance `local`.
    pub(crate) fn slot(&self, local: u32) -> Option<&Notify> {
        self.slots.get(local as usize)
    }
}

/// When each instance of this process registers within the interval.
#[derive(Debug, Clone)]
pub(crate) struct Phases {
    /// Unix milliseconds the fleet's schedule counts from.
    pub(crate) epoch_ms: u64,
    pub(crate) interval: Duration,
    /// `(offset in ms, local index)`, sorted by offset.
    order: Vec<(u32, u32)>,
}

impl Phases {
    /// Offsets for the instances `first .. first + count` of the fleet: with `splay` a value in
    /// `0 .. interval` picked by `seed` and the global index, else 0.
    pub(crate) fn new(
        epoch_ms: u64,
        interval: Duration,
        splay: bool,
        seed: u64,
        first: u32,
        count: u32,
    ) -> Phases {
        let span = u64::try_from(interval.as_millis())
            .unwrap_or(u64::MAX)
            .clamp(1, u64::from(u32::MAX));
        let mut order: Vec<(u32, u32)> = (0..count)
            .map(|local| {
                let offset = if splay {
                    let global = u64::from(first) + u64::from(local);
                    // Below `span`, which fits in u32.
                    (mix(seed ^ global.wrapping_mul(0x9e37_79b9_7f4a_7c15)) % span) as u32
                } else {
                    0
                };
                (offset, local)
            })
            .collect();
        order.sort_unstable();
        Phases {
            epoch_ms,
            interval,
            order,
        }
    }

    /// The first-registration offsets, sorted.
    #[cfg(test)]
    pub(crate) fn offsets(&self) -> impl Iterator<Item = Duration> + '_ {
        self.order
            .iter()
            .map(|(ms, _)| Duration::from_millis(u64::from(*ms)))
    }
}

/// The current unix time in milliseconds.
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The monotonic instant of the unix time `epoch_ms`.
fn instant_of(epoch_ms: u64) -> Instant {
    let now = Instant::now();
    let now_ms = unix_ms();
    if epoch_ms >= now_ms {
        now + Duration::from_millis(epoch_ms - now_ms)
    } else {
        now.checked_sub(Duration::from_millis(now_ms - epoch_ms))
            .unwrap_or(now)
    }
}

/// Wakes every instance at each of its deadlines until `cancel`.
pub(crate) async fn drive(schedule: Arc<Schedule>, phases: Phases, cancel: CancellationToken) {
    let epoch = instant_of(phases.epoch_ms);
    let interval = phases.interval.max(Duration::from_millis(1));
    // A process started after the epoch (a restarted worker) joins the current cycle.
    let elapsed = Instant::now().saturating_duration_since(epoch);
    let mut cycle = u32::try_from(elapsed.as_nanos() / interval.as_nanos()).unwrap_or(u32::MAX);
    loop {
        let base = epoch + interval.saturating_mul(cycle);
        for &(offset, local) in &phases.order {
            let due = base + Duration::from_millis(u64::from(offset));
            if due > Instant::now() {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep_until(due) => {}
                }
            }
            if let Some(slot) = schedule.slot(local) {
                slot.notify_one();
            }
        }
        if cancel.is_cancelled() {
            return;
        }
        cycle = cycle.saturating_add(1);
    }
}

/// splitmix64's finaliser: a well-spread hash of `x`.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splay_spreads_offsets_over_the_interval_and_agrees_across_workers() {
        let interval = Duration::from_secs(10);
        let whole = Phases::new(0, interval, true, 7, 0, 1000);
        let offsets: Vec<Duration> = whole.offsets().collect();
        assert!(offsets.iter().all(|o| *o < interval));
        // Every tenth of the interval holds some first registrations.
        for tenth in 0..10 {
            let (lo, hi) = (Duration::from_secs(tenth), Duration::from_secs(tenth + 1));
            let n = offsets.iter().filter(|o| **o >= lo && **o < hi).count();
            assert!((50..=150).contains(&n), "tenth {tenth}: {n}");
        }
        // A worker holding instances 500.. gives them the offsets the whole fleet gives them.
        let half = Phases::new(0, interval, true, 7, 500, 500);
        let mut by_local: Vec<(u32, u32)> = half.order.clone();
        by_local.sort_by_key(|(_, l)| *l);
        let mut whole_by_local = whole.order.clone();
        whole_by_local.sort_by_key(|(_, l)| *l);
        for (local, (offset, _)) in by_local.iter().enumerate() {
            assert_eq!(*offset, whole_by_local[500 + local].0);
        }
        let none = Phases::new(0, interval, false, 7, 0, 100);
        assert!(none.offsets().all(|o| o.is_zero()));
    }

    // A real clock (tokio's test-util is not enabled in this workspace): a 200 ms interval,
    // and a generous 2 s bound for three wake-ups on a shared machine.
    #[tokio::test]
    async fn drive_wakes_each_instance_once_per_interval() {
        let schedule = Arc::new(Schedule::new(3));
        let phases = Phases::new(unix_ms(), Duration::from_millis(200), false, 0, 0, 3);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(drive(Arc::clone(&schedule), phases, cancel.clone()));
        let begun = Instant::now();
        let mut woke = 0;
        for _ in 0..3 {
            for local in 0..3 {
                tokio::time::timeout(
                    Duration::from_secs(2),
                    schedule.slot(local).unwrap().notified(),
                )
                .await
                .expect("woken within the bound");
                woke += 1;
            }
        }
        assert_eq!(woke, 9);
        // Three wake-ups of one slot need two whole intervals after the first.
        assert!(
            begun.elapsed() >= Duration::from_millis(390),
            "{:?}",
            begun.elapsed()
        );
        cancel.cancel();
        task.await.unwrap();
    }
}
