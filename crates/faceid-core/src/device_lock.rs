//! One caller at a time on a GPU device.
//!
//! burn's fusion server and cubecl's device thread can wedge each other when two threads feed
//! one wgpu device while a kernel is being autotuned: the fusion server waits for exclusive use
//! of the device, the device thread waits inside the tuning run, and the feeding threads wait
//! for room in the fusion queue. A GPU runs one generation at full occupancy anyway (batching,
//! not threads, is how it takes more work), so every entry point that drives a device (a
//! generation, a face analysis, a prompt encoding) runs inside [`exclusive`], which lets one
//! thread at a time onto each GPU device. The lock is re-entrant, so an entry point may call
//! another. The CPU backend is not locked: its kernels are plain functions of their inputs.

use std::cell::Cell;
use std::sync::{Arc, Mutex, PoisonError};

use burn::tensor::Device;
use parking_lot::ReentrantMutex;

/// The lock of each GPU device that has been used, found by device equality (a handful of
/// devices at most, so a list).
static LOCKS: Mutex<Vec<(Device, Arc<ReentrantMutex<()>>)>> = Mutex::new(Vec::new());

thread_local! {
    /// How many `exclusive` calls this thread is inside.
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// Runs `work` while no other thread runs device work on `device`, then waits until the device
/// has finished what `work` queued (the outermost call only), so the next caller starts on an
/// idle device. On the CPU backend `work` runs at once.
pub fn exclusive<T>(device: &Device, work: impl FnOnce() -> T) -> T {
    if !is_gpu(device) {
        return work();
    }
    let lock = lock_of(device);
    let _guard = lock.lock();
    let depth = Depth::enter();
    let out = work();
    drop(depth);
    if DEPTH.get() == 0 {
        // A failed sync is the device failing; the next caller's own work reports it.
        let _ = device.sync();
    }
    out
}

/// Whether `device` is a GPU backend, whose callers are serialised.
pub fn is_gpu(device: &Device) -> bool {
    #[cfg(feature = "flex")]
    if *device == Device::flex() {
        return false;
    }
    let _ = device;
    true
}

/// This thread's depth inside `exclusive`, restored when dropped (on a panic too).
struct Depth(usize);

impl Depth {
    fn enter() -> Self {
        let depth = DEPTH.get();
        DEPTH.set(depth + 1);
        Self(depth)
    }
}

impl Drop for Depth {
    fn drop(&mut self) {
        DEPTH.set(self.0);
    }
}

fn lock_of(device: &Device) -> Arc<ReentrantMutex<()>> {
    // Nothing runs while this list is held, so a poisoned list is still consistent.
    let mut locks = LOCKS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, lock)) = locks.iter().find(|(d, _)| d == device) {
        return lock.clone();
    }
    let lock = Arc::new(ReentrantMutex::new(()));
    locks.push((device.clone(), lock.clone()));
    lock
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    /// Counts the threads inside `exclusive` on one device at the same moment.
    fn most_at_once(device: &Device) -> usize {
        let inside = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    exclusive(device, || {
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(30));
                        inside.fetch_sub(1, Ordering::SeqCst);
                    })
                });
            }
        });
        most.load(Ordering::SeqCst)
    }

    #[cfg(feature = "flex")]
    #[test]
    fn the_cpu_backend_is_not_serialised() {
        assert!(!is_gpu(&Device::flex()));
        assert!(most_at_once(&Device::flex()) > 1);
    }

    #[cfg(feature = "wgpu")]
    #[test]
    fn a_gpu_device_takes_one_caller_at_a_time_and_lets_the_same_thread_back_in() {
        let device = Device::wgpu(burn::tensor::DeviceKind::DefaultDevice);
        assert!(is_gpu(&device));
        assert_eq!(most_at_once(&device), 1);
        let nested = exclusive(&device, || exclusive(&device, || 7));
        assert_eq!(nested, 7);
    }
}
