//! Threads sharing one loaded model: each request gets the images it gets alone, and no
//! interleaving of the callers wedges the device (on a GPU the callers take turns, see
//! `faceid_core::device_lock`).

use std::ops::ControlFlow;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use faceid_core::Device;
use faceid_pipeline::{GenerateRequest, StableDiffusion};
use image::RgbImage;

/// Longer than the threads' work takes on the slowest machine here, by far.
const WATCHDOG: Duration = Duration::from_secs(600);

fn request(seed: u64) -> GenerateRequest {
    GenerateRequest {
        prompt: format!("a photo number {seed}"),
        negative_prompt: Some("blurry".into()),
        width: 32,
        height: 32,
        steps: 3,
        guidance_scale: 5.0,
        seed,
        ..Default::default()
    }
}

fn generate(sd: &StableDiffusion, seed: u64) -> Vec<RgbImage> {
    let out = sd.generate(&request(seed), &mut |_| ControlFlow::Continue(()));
    out.unwrap().images
}

fn threads_get_what_each_gets_alone(device: &Device) {
    let data = crate::test_data().join("sd/tiny-a");
    let sd = Arc::new(StableDiffusion::from_dir(&data, None, device).unwrap());
    let seeds = [11u64, 12, 13, 14];
    let alone: Vec<Vec<RgbImage>> = seeds.iter().map(|&s| generate(&sd, s)).collect();

    let (done, finished) = mpsc::channel();
    for (i, &seed) in seeds.iter().enumerate() {
        let (sd, done) = (sd.clone(), done.clone());
        std::thread::spawn(move || {
            // Two rounds each, so that the threads overlap in every phase of a generation.
            let first = generate(&sd, seed);
            let second = generate(&sd, seed);
            done.send((i, first, second)).unwrap();
        });
    }
    for _ in &seeds {
        let (i, first, second) = finished
            .recv_timeout(WATCHDOG)
            .unwrap_or_else(|_| panic!("{device:?}: concurrent generations did not finish"));
        assert!(
            first == alone[i],
            "{device:?}: seed {} differs when run concurrently",
            seeds[i]
        );
        assert!(
            second == alone[i],
            "{device:?}: seed {} differs in the second round",
            seeds[i]
        );
    }
}

#[test]
fn threads_sharing_a_model_get_the_images_each_gets_alone() {
    for device in faceid_core::testing::devices() {
        threads_get_what_each_gets_alone(&device);
    }
}
