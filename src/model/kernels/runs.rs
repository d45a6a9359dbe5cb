//! Work shared out among threads so that no product waits for its slowest thread.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Units of work in one contiguous run per thread. A thread takes its own run's
/// units from the front; when it is done, it takes the last unit of whichever run has the most
/// left. Runs of a fixed size made every product wait for its slowest thread: a core shared with
/// another program, a descheduled vCPU, an efficiency core of a hybrid CPU (Intel's since Alder
/// Lake, Apple's). Two Zen 3 cores with one worker at half speed (another program on its core):
/// ViT-B/32 at batch 8 / 32 ran 10.0-10.7 images/s with fixed runs, 13.0-14.9 with these, 18-19
/// on the idle machine (benches/README.md).
pub(super) struct Runs(Vec<Run>);

impl Runs {
    /// Run t is units `start(t)..start(t + 1)`, for t < `threads`.
    pub(super) fn new(threads: usize, start: impl Fn(usize) -> usize) -> Self {
        let bounds = |t: usize| ((start(t) as u64) << 32) | start(t + 1) as u64;
        Runs((0..threads).map(|t| Run(AtomicU64::new(bounds(t)))).collect())
    }

    /// The next unit of thread `t`'s own run, as (t, unit).
    pub(super) fn take_own(&self, t: usize) -> Option<(usize, usize)> {
        self.0[t].take(true).map(|unit| (t, unit))
    }

    /// The last unit of the run with the most left, as (its run, unit), or None when every run
    /// is done.
    pub(super) fn take_left_over(&self) -> Option<(usize, usize)> {
        loop {
            let (run, fullest) = self.0.iter().enumerate().max_by_key(|(_, run)| run.left())?;
            if fullest.left() == 0 {
                return None;
            }
            // Another thread may have taken its last unit meanwhile: then look again.
            if let Some(unit) = fullest.take(false) {
                return Some((run, unit));
            }
        }
    }
}

/// One run: (next unit, end) packed in one word, so that its owner (from the front) and the
/// others (from the back) take units with one compare-and-swap; on its own cache line, so that
/// the owners' counters do not contend.
#[repr(align(128))]
struct Run(AtomicU64);

impl Run {
    fn bounds(packed: u64) -> (u64, u64) {
        (packed >> 32, packed & 0xffff_ffff)
    }

    fn left(&self) -> u64 {
        let (next, end) = Run::bounds(self.0.load(Relaxed));
        end.saturating_sub(next)
    }

    /// Takes the unit at the front of the run, or at its back; None when the run is done.
    fn take(&self, front: bool) -> Option<usize> {
        // Relaxed: the units are independent, and rayon's join publishes what they wrote.
        let taken = self.0.fetch_update(Relaxed, Relaxed, |packed| {
            let (next, end) = Run::bounds(packed);
            (next < end).then(|| if front { packed + (1 << 32) } else { packed - 1 })
        });
        let (next, end) = Run::bounds(taken.ok()?);
        Some(if front { next } else { end - 1 } as usize)
    }
}
