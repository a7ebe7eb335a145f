//! The schedulers against diffusers 0.42 (fixtures from `tests/fixtures/gen_schedulers.py`):
//! training tables, timesteps and sigmas for many configs and step counts, full denoising loops,
//! and `add_noise`. Runs on the flex (CPU) backend.

mod common;

use std::collections::BTreeMap;

use common::{floats, max_abs_diff, to_tensor, to_vec, Fixtures};
use faceid_core::{Device, TorchGenerator};

/// Every sample of every loop must match diffusers within this absolute bound.
const SAMPLE_TOLERANCE: f32 = 1e-5;

fn bits_equal(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits() || x == y)
}

#[test]
fn training_tables_are_bit_identical() {
    let fixtures = Fixtures::load();
    let cases = fixtures.cases("train");
    assert!(!cases.is_empty());
    for case in cases {
        let scheduler = fixtures.build(case);
        let key = case["key"].as_str().expect("key");
        let (_, betas) = fixtures.tensor(&format!("{key}/betas"));
        let (_, alphas_cumprod) = fixtures.tensor(&format!("{key}/alphas_cumprod"));
        assert!(bits_equal(scheduler.betas(), &betas), "{key}: betas differ");
        assert!(
            bits_equal(scheduler.alphas_cumprod(), &alphas_cumprod),
            "{key}: alphas_cumprod differ"
        );
    }
}

#[test]
fn timesteps_and_sigmas_are_identical() {
    let fixtures = Fixtures::load();
    let cases = fixtures.cases("timesteps");
    assert!(cases.len() > 300);
    for case in cases {
        let label = format!("{} / {} / {} steps", case["kind"], case["config"], case["steps"]);
        let mut scheduler = fixtures.build(case);
        let steps = case["steps"].as_u64().expect("steps") as usize;
        scheduler.set_timesteps(steps).unwrap_or_else(|e| panic!("{label}: {e}"));
        let expected_timesteps = floats(&case["timesteps"]);
        let expected_sigmas = floats(&case["sigmas"]);
        assert!(
            bits_equal(scheduler.timesteps(), &expected_timesteps),
            "{label}: timesteps\n  got      {:?}\n  diffusers {expected_timesteps:?}",
            scheduler.timesteps()
        );
        assert!(
            bits_equal(scheduler.sigmas(), &expected_sigmas),
            "{label}: sigmas\n  got      {:?}\n  diffusers {expected_sigmas:?}",
            scheduler.sigmas()
        );
        let init = case["init_noise_sigma"].as_f64().expect("init_noise_sigma") as f32;
        assert_eq!(scheduler.init_noise_sigma(), init, "{label}: init_noise_sigma");
    }
}

#[test]
fn denoising_loops_match() {
    let fixtures = Fixtures::load();
    let device = Device::flex();
    let shape = fixtures.shape();
    let numel: usize = shape.iter().product();
    let (_, bank) = fixtures.tensor("model_outputs");
    let mut worst: BTreeMap<String, f32> = BTreeMap::new();

    let cases = fixtures.cases("loops");
    assert!(cases.len() >= 25);
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let kind = case["kind"].as_str().expect("kind");
        let steps = case["steps"].as_u64().expect("steps") as usize;
        let mut scheduler = fixtures.build(case);
        scheduler.set_timesteps(steps).expect("set_timesteps");
        scheduler.set_eta(case["eta"].as_f64().expect("eta") as f32).expect("eta");
        assert_eq!(scheduler.timesteps(), floats(&case["timesteps"]).as_slice(), "{name}");

        // The initial latents come from the same generator the scheduler then draws from.
        let mut generator = TorchGenerator::new(case["seed"].as_u64().expect("seed"));
        let drawn = to_vec(
            generator
                .randn_tensor(shape, &device)
                .mul_scalar(scheduler.init_noise_sigma()),
        );
        let (_, initial) = fixtures.tensor(&format!("loop/{name}/initial"));
        assert!(bits_equal(&drawn, &initial), "{name}: initial latents");

        let (_, expected_samples) = fixtures.tensor(&format!("loop/{name}/sample"));
        let expected_inputs = matches!(kind, "euler" | "euler-a")
            .then(|| fixtures.tensor(&format!("loop/{name}/model_input")).1);
        let mut sample = to_tensor(&initial, shape, &device);
        let mut case_worst = 0f32;
        for i in 0..scheduler.timesteps().len() {
            let sample_values = to_vec(sample.clone());
            let input = to_vec(scheduler.scale_model_input(sample.clone(), i).expect("scale_model_input"));
            match &expected_inputs {
                Some(inputs) => {
                    let err = max_abs_diff(&input, &inputs[i * numel..(i + 1) * numel]);
                    assert!(err <= SAMPLE_TOLERANCE, "{name}: model input {i} off by {err:e}");
                }
                None => assert!(bits_equal(&input, &sample_values), "{name}: input {i} was scaled"),
            }
            let model_output = to_tensor(&bank[i * numel..(i + 1) * numel], shape, &device);
            sample = scheduler
                .step(model_output, i, sample, &mut generator)
                .unwrap_or_else(|e| panic!("{name}: step {i}: {e}"));
            let got = to_vec(sample.clone());
            let err = max_abs_diff(&got, &expected_samples[i * numel..(i + 1) * numel]);
            assert!(err <= SAMPLE_TOLERANCE, "{name}: step {i} off by {err:e}");
            case_worst = case_worst.max(err);
        }
        let entry = worst.entry(kind.to_string()).or_default();
        *entry = entry.max(case_worst);
    }
    for (kind, err) in &worst {
        eprintln!("loops: {kind}: max abs error {err:e}");
    }
}

#[test]
fn add_noise_matches() {
    let fixtures = Fixtures::load();
    let device = Device::flex();
    let shape = fixtures.shape();
    let numel: usize = shape.iter().product();
    let (_, bank) = fixtures.tensor("model_outputs");
    let original = to_tensor(&bank[..numel], shape, &device);
    let noise = to_tensor(&bank[numel..2 * numel], shape, &device);
    let mut worst = 0f32;
    for case in fixtures.cases("add_noise") {
        let key = case["key"].as_str().expect("key");
        let mut scheduler = fixtures.build(case);
        scheduler
            .set_timesteps(case["steps"].as_u64().expect("steps") as usize)
            .expect("set_timesteps");
        let step_index = case["step_index"].as_u64().expect("step_index") as usize;
        let got = to_vec(
            scheduler
                .add_noise(original.clone(), noise.clone(), step_index)
                .expect("add_noise"),
        );
        let (_, expected) = fixtures.tensor(key);
        let err = max_abs_diff(&got, &expected);
        assert!(err <= SAMPLE_TOLERANCE, "{key}: off by {err:e}");
        worst = worst.max(err);
    }
    eprintln!("add_noise: max abs error {worst:e}");
}
