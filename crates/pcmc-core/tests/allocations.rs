//! No hot-loop allocation: once a [`Workspace`] has been used, a filter pass
//! allocates a number of times that does not depend on the particle count
//! (a few small vectors per observation step, none per particle or event).
use pcmc_core::filter::{FilterKey, KernelChoice, SerialRunner, Workspace, run_filter};
use pcmc_core::workloads::lv11;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator, only counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations of the second pass with a warmed-up workspace.
fn allocations(n: usize, kernel: KernelChoice) -> u64 {
    let base = lv11(n, 1);
    let mut cfg = base.config().clone();
    cfg.kernel = kernel;
    let problem = base.with_config(cfg).unwrap();
    let theta = [1.0, 0.005, 0.6];
    let mut ws = Workspace::default();
    let key = |i| FilterKey {
        seed: 3,
        chain: 0,
        iteration: i,
    };
    let first = run_filter(&SerialRunner, &problem, &theta, key(1), &mut ws);
    assert!(first.loglik.is_finite());
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let out = run_filter(&SerialRunner, &problem, &theta, key(2), &mut ws);
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    assert!(out.loglik.is_finite());
    after - before
}

#[test]
fn allocations_per_pass_do_not_grow_with_particles() {
    for kernel in [
        KernelChoice::Scalar,
        KernelChoice::Batch,
        KernelChoice::Simd,
    ] {
        per_kernel(kernel);
    }
}

fn per_kernel(kernel: KernelChoice) {
    let small = allocations(256, kernel);
    let large = allocations(4096, kernel);
    eprintln!(
        "allocations per pass, {kernel:?}: {small} (256 particles), {large} (4096 particles)"
    );
    // 16 observation steps; a handful of small vectors each.
    assert!(small <= 16 * 16, "{small} allocations for one pass");
    // Sixteen times the particles (and ~16× the SSA events): at most a few
    // more allocations (vector growth in the per-step bookkeeping).
    assert!(
        large <= small + 16,
        "{small} allocations with 256 particles, {large} with 4096"
    );
}
