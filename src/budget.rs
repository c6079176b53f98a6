//! One CPU budget for the whole process, so parallelism does not multiply.
//!
//! The scheduler runs `-j` steps at once, and a step may want helper threads of its
//! own (gzip workers, file hashing). Left alone, `-j 2` steps each compressing on 2
//! threads put 4 busy threads on a 2-core machine, and `-j 8` put 64. Instead every
//! running step occupies one core of the budget, and a step asks for *extra* cores
//! without waiting: it gets only what the other steps leave free, possibly none. A
//! lone layer step on an idle machine compresses on every core; eight steps at once
//! each compress on their own thread.
//!
//! Occupying never blocks: a `-j` above the core count is the user's choice (pushes
//! and commands mostly wait), it only leaves no extra cores to hand out.

use std::sync::{Mutex, OnceLock};

/// A count of cores, shared by everything that runs threads.
#[derive(Debug)]
pub struct Budget {
    /// Cores not occupied; negative when more steps run than there are cores.
    free: Mutex<isize>,
}

/// Cores held until dropped.
#[derive(Debug)]
#[must_use = "the cores are given back when this is dropped"]
pub struct Cores<'a> {
    budget: &'a Budget,
    n: usize,
}

impl Cores<'_> {
    /// How many cores this holds.
    pub fn count(&self) -> usize {
        self.n
    }
}

impl Drop for Cores<'_> {
    fn drop(&mut self) {
        *self.budget.lock() += self.n as isize;
    }
}

/// The process's budget: one core per hardware thread.
pub fn global() -> &'static Budget {
    static GLOBAL: OnceLock<Budget> = OnceLock::new();
    GLOBAL.get_or_init(|| Budget::new(std::thread::available_parallelism().map_or(1, usize::from)))
}

impl Budget {
    /// A budget of `cores`.
    pub fn new(cores: usize) -> Budget {
        Budget {
            free: Mutex::new(cores as isize),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, isize> {
        self.free.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One core for a running step, free or not.
    pub fn occupy(&self) -> Cores<'_> {
        *self.lock() -= 1;
        Cores { budget: self, n: 1 }
    }

    /// Up to `max` more cores for a step's helper threads: as many as are free
    /// now, possibly none. Never waits.
    pub fn extra(&self, max: usize) -> Cores<'_> {
        let max = isize::try_from(max).unwrap_or(isize::MAX);
        let mut free = self.lock();
        let n = (*free).clamp(0, max);
        *free -= n;
        Cores {
            budget: self,
            n: n as usize,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_occupy_and_extras_take_only_what_is_left() {
        let b = Budget::new(2);
        let one = b.occupy();
        let extra = b.extra(4);
        assert_eq!(extra.count(), 1, "one core left beside the running step");
        let two = b.occupy(); // a second step runs anyway
        assert_eq!(b.extra(4).count(), 0, "the machine is full");
        drop(extra);
        assert_eq!(b.extra(4).count(), 0, "still full: two steps on two cores");
        drop(two);
        assert_eq!(b.extra(4).count(), 1);
        drop(one);
        assert_eq!(b.extra(4).count(), 2);
        // Over-subscription: more steps than cores leave nothing extra, and the
        // count comes back exactly.
        let steps: Vec<_> = (0..5).map(|_| b.occupy()).collect();
        assert_eq!(b.extra(1).count(), 0);
        drop(steps);
        assert_eq!(b.extra(usize::MAX).count(), 2);
    }
}
