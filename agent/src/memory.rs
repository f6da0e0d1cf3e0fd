//! The allocator's side of running unattended for months.
//!
//! glibc's malloc keeps what the program frees for reuse. Two of its habits
//! make a long-running agent's memory climb in steps without any leak
//! (measured with the soak benchmark, `tests/examples/soak.rs`):
//!
//! - It gives each thread that allocates while another one does an arena
//!   of its own, up to eight per core. Each arena keeps its own free
//!   memory, so the agent's threads (two runtime workers, the spool writer,
//!   the runtime's blocking threads) each held a share of the replay's
//!   buffers after a collector outage.
//! - Freed memory in the middle of an arena stays resident until
//!   `malloc_trim` hands its pages back; only the top of the main arena is
//!   returned by itself.
//!
//! So the agent caps the arenas at [`ARENAS`] when it starts and trims once
//! a replay of spooled samples has been delivered ([`release_free`]): the
//! one moment when a large amount of memory was just freed. Elsewhere
//! (musl, other systems) both are no-ops.
#![allow(unsafe_code)]

/// Most malloc arenas (glibc's `M_ARENA_MAX`; the default is eight per core).
pub const ARENAS: i32 = 2;

/// Caps the number of malloc arenas. Call first thing in `main`, before any
/// thread is started.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tunable of the allocator; it is called
    // before other threads exist and takes no pointers.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
    }
}

/// Returns the allocator's free pages to the system; whether any were.
pub fn release_free() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers and locks each arena itself;
    // it may be called from any thread at any time.
    unsafe {
        libc::malloc_trim(0) == 1
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    false
}

/// RssAnon of this process (heap and stacks, resident), KiB; 0 where
/// `/proc` does not tell.
pub fn anon_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn freed_memory_goes_back_to_the_system() {
        // Many small blocks (below the mmap threshold, so they live in the
        // arena), one in 64 kept: the freed rest lies around them in
        // the arena's middle, where glibc does not return it by itself.
        let mut blocks: Vec<Vec<u8>> = (0..40_000).map(|i| vec![i as u8; 1000]).collect();
        let kept: Vec<Vec<u8>> = blocks.iter_mut().step_by(64).map(std::mem::take).collect();
        drop(blocks);
        let before = anon_kib();
        assert!(release_free(), "malloc_trim found nothing to return");
        let after = anon_kib();
        assert!(
            after + 10_000 < before,
            "RssAnon {before} KiB before the trim, {after} KiB after: expected about 39 MB back"
        );
        assert_eq!(kept.len(), 625);
        assert!(kept.iter().enumerate().all(|(i, b)| b[0] == (i * 64) as u8));
    }
}
