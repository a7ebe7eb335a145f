//! The GPU kernels a piece of work launches and how long each one ran on the device: where a GPU
//! spends a denoising step, and how much of the step it spends at all.
//!
//! [`profile_kernels`] watches every kernel launch the process issues while the work runs
//! (cubecl's launch observer), has each one timed on the device without waiting for it (timestamp
//! queries: the kernels still run back to back), and reads the timings once the work is done.
//! The sum of the kernels' times against the same work's wall time unobserved says whether the
//! device computes (kernels) or waits for the host (launches, fusion, allocation).

/// One kernel, by name, in a [`KernelProfile`].
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct KernelTime {
    /// The kernel's name without module path or generic arguments (`MatmulEntry`, ...).
    pub name: String,
    /// How many times it was launched.
    pub launches: usize,
    /// How many of those launches carried a timing.
    pub timed: usize,
    /// The timed launches' total time, in seconds.
    pub seconds: f64,
}

/// What [`profile_kernels`] saw.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct KernelProfile {
    /// Kernel launches issued.
    pub launches: usize,
    /// Launches that carried a timing: a window the backend could not time carries none.
    pub timed: usize,
    /// How the timings were taken: `device` (timestamps on the GPU: the kernel alone) or `system`
    /// (host time around a blocking submit, compilation included: not the kernel alone); empty
    /// when nothing was timed.
    pub method: String,
    /// The sum of the timed launches' durations, in seconds.
    pub busy_seconds: f64,
    /// Per kernel name, the longest total time first.
    pub kernels: Vec<KernelTime>,
}

/// Runs `work` with every kernel launch it issues counted and timed on the device. `work` must
/// finish its GPU work before it returns (read its result back): a kernel still queued when it
/// returns is counted but its timing may be lost. Launches of other threads in the meantime are
/// counted too (the observer is process-wide). Work on the CPU (flex) launches no kernels, and a
/// build without a GPU backend has none to watch: its profile is empty.
pub fn profile_kernels<T>(work: impl FnOnce() -> T) -> (T, KernelProfile) {
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    return observed::profile_kernels(work);
    #[cfg(not(any(feature = "wgpu", feature = "cuda")))]
    return (work(), KernelProfile::default());
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
mod observed {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, MutexGuard};
    use std::time::Duration;

    use cubecl_runtime::config::{TypeNameFormatLevel, type_name_format};
    use cubecl_runtime::logging::{
        LaunchObservation, LaunchObserver, ProfileDuration, TimingMethod, TimingRequest,
    };

    use super::{KernelProfile, KernelTime};

    pub(super) fn profile_kernels<T>(work: impl FnOnce() -> T) -> (T, KernelProfile) {
        let observer = Arc::new(Observer::default());
        let watching = LaunchObservation::new(observer.clone());
        let out = work();
        drop(watching);
        let state = std::mem::take(&mut *observer.lock());
        (out, state.into_profile())
    }

    #[derive(Default)]
    struct Observer(Mutex<Launches>);

    impl Observer {
        fn lock(&self) -> MutexGuard<'_, Launches> {
            // A poisoned lock only means a panic elsewhere mid-update of plain counters.
            self.0
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
        }
    }

    #[derive(Default)]
    struct Launches {
        counts: HashMap<&'static str, usize>,
        pending: Vec<(&'static str, ProfileDuration)>,
        timed: Vec<(&'static str, Duration, TimingMethod)>,
    }

    impl LaunchObserver for Observer {
        fn launched(&self, kernel: &'static str) {
            *self.lock().counts.entry(kernel).or_default() += 1;
        }

        fn timing(&self) -> TimingRequest {
            TimingRequest::Deferred
        }

        fn profiled(&self, kernel: &'static str, profile: ProfileDuration) {
            self.lock().pending.push((kernel, profile));
        }

        // Where cubecl's profiling logger reads the measurements too, they arrive read.
        fn timed(&self, kernel: &'static str, duration: Duration, method: TimingMethod) {
            self.lock().timed.push((kernel, duration, method));
        }
    }

    impl Launches {
        fn into_profile(self) -> KernelProfile {
            let mut timed = self.timed;
            for (kernel, profile) in self.pending {
                let method = profile.timing_method();
                if let Some(ticks) = futures_lite::future::block_on(profile.resolve()) {
                    timed.push((kernel, ticks.duration(), method));
                }
            }
            let mut by_name: HashMap<String, KernelTime> = HashMap::new();
            for (kernel, count) in &self.counts {
                slot(&mut by_name, kernel).launches += count;
            }
            let mut methods = Vec::new();
            for (kernel, duration, method) in &timed {
                let time = slot(&mut by_name, kernel);
                time.timed += 1;
                time.seconds += duration.as_secs_f64();
                let method = method.to_string();
                if !methods.contains(&method) {
                    methods.push(method);
                }
            }
            let mut kernels: Vec<KernelTime> = by_name.into_values().collect();
            kernels.sort_by(|a, b| b.seconds.total_cmp(&a.seconds).then(a.name.cmp(&b.name)));
            KernelProfile {
                launches: self.counts.values().sum(),
                timed: timed.len(),
                method: methods.join("+"),
                busy_seconds: kernels.iter().map(|k| k.seconds).sum(),
                kernels,
            }
        }
    }

    /// The entry of `kernel` (by its short name: launches of one kernel with different generic
    /// arguments add up).
    fn slot<'a>(by_name: &'a mut HashMap<String, KernelTime>, kernel: &str) -> &'a mut KernelTime {
        let name = type_name_format(kernel, TypeNameFormatLevel::Short);
        by_name.entry(name.clone()).or_insert(KernelTime {
            name,
            launches: 0,
            timed: 0,
            seconds: 0.0,
        })
    }
}

#[cfg(all(test, feature = "wgpu"))]
mod tests {
    use burn::tensor::{Device, Tensor};

    use super::*;

    #[test]
    fn counts_and_times_the_kernels_a_matrix_product_launches() {
        let device = Device::wgpu(burn::tensor::DeviceKind::DefaultDevice);
        let a = Tensor::<2>::ones([48, 32], &device);
        let b = Tensor::<2>::ones([32, 40], &device).mul_scalar(0.5);
        // Compiled and tuned before the profile, so that it sees the product's launches alone.
        let _ = a.clone().matmul(b.clone()).into_data();

        let (product, profile) = profile_kernels(|| a.matmul(b).into_data());
        let product: Vec<f32> = product.try_into_vec_as::<f32>().unwrap();
        assert_eq!(product.len(), 48 * 40);
        assert!(product.iter().all(|&v| v == 16.0), "{:?}", &product[..4]);

        assert!(profile.launches >= 1, "{profile:?}");
        let by_name: usize = profile.kernels.iter().map(|k| k.launches).sum();
        assert_eq!(by_name, profile.launches, "{profile:?}");
        assert!(profile.timed >= 1, "{profile:?}");
        assert!(profile.busy_seconds > 0.0, "{profile:?}");
        assert!(
            ["device", "system"].contains(&profile.method.as_str()),
            "{profile:?}"
        );
        assert!(
            profile.kernels.iter().all(|k| !k.name.contains("::")),
            "{profile:?}"
        );
        let sorted = profile
            .kernels
            .windows(2)
            .all(|w| w[0].seconds >= w[1].seconds);
        assert!(sorted, "{profile:?}");

        let ((), nothing) = profile_kernels(|| ());
        assert_eq!(nothing, KernelProfile::default());
    }
}
