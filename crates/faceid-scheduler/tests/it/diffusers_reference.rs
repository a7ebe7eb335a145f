//! The schedulers against diffusers 0.42 (fixtures from `tests/fixtures/gen_schedulers.py`):
//! training tables, timesteps and sigmas for many configs and step counts, full denoising loops,
//! and `add_noise`. Runs on the flex (CPU) backend.
//!
//! Why some comparisons are not bit-exact: the reference torch (x86-64 pip wheel, MKL) evaluates
//! float32 `sqrt`, `** 0.5`, `log` and `exp` — even on 0-dim tensors — with MKL's vector math,
//! which is off the correctly rounded result by one ulp for ~15% of `sqrt` inputs, ~8% of `log`
//! and ~1% of `exp` inputs (measured on the fixture machine); numpy's float32 `log` is likewise
//! SIMD code. The port uses correctly rounded IEEE operations. Hence:
//! - tables and timesteps that involve none of those functions are compared bit for bit
//!   (betas, `alphas_cumprod`, every integer timestep, Euler timesteps without Karras);
//! - sigmas (`((1 - a) / a) ** 0.5`) and `init_noise_sigma` may differ by 2 ulps;
//! - Euler's Karras and continuous timesteps go through `log` of those sigmas: 1e-6 relative
//!   (DPM-Solver's Karras timesteps are rounded to integers and come out identical);
//! - samples: the one-ulp differences of the per-step coefficients add up over the loop, and the
//!   latents are not normalised (Euler starts at 14.6 x N(0, 1), values reach 60 where a float32
//!   ulp is 3.8e-6), so the bound is 1e-5 absolute plus 1e-6 relative to the value;
//! - zero-terminal-SNR configs: `rescale_zero_terminal_snr` takes `sqrt` of `alphas_cumprod`
//!   and then subtracts nearly equal numbers (`1 - alpha_bar[0]`), so torch's one-ulp `sqrt`
//!   error becomes a ~3e-3 relative difference in the first beta and in the smallest sigma.
//!   Tables are compared to 1e-6 absolute, sigmas to 5e-3 relative, and the samples of those
//!   loops to 5e-3 absolute (DPM-Solver++ with Karras sigmas, whose schedule ends at that
//!   smallest sigma, reaches 3.4e-3; DDIM 4e-5).

use std::collections::BTreeMap;

use crate::common::{Fixtures, floats, is_zero_snr, max_abs_diff, to_tensor, to_vec};
use faceid_core::{Device, TorchGenerator};

fn bits_equal(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.to_bits() == y.to_bits() || x == y)
}

/// Every element within `abs + rel * |expected|`; NaN never passes.
fn all_close(got: &[f32], expected: &[f32], abs: f32, rel: f32) -> bool {
    got.len() == expected.len()
        && got
            .iter()
            .zip(expected)
            .all(|(g, e)| (g - e).abs() <= abs + rel * e.abs())
}

/// The sample bound of a loop (see the module docs).
fn sample_ok(got: f32, expected: f32, zero_snr: bool) -> bool {
    let bound = if zero_snr {
        5e-3
    } else {
        1e-5 + 1e-6 * expected.abs()
    };
    (got - expected).abs() <= bound
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
        if is_zero_snr(&fixtures, case) {
            assert!(
                all_close(scheduler.betas(), &betas, 1e-6, 0.0),
                "{key}: betas differ"
            );
            let got = scheduler.alphas_cumprod();
            assert!(
                all_close(got, &alphas_cumprod, 1e-6, 0.0),
                "{key}: alphas_cumprod differ"
            );
        } else {
            assert!(bits_equal(scheduler.betas(), &betas), "{key}: betas differ");
            let got = scheduler.alphas_cumprod();
            assert!(
                bits_equal(got, &alphas_cumprod),
                "{key}: alphas_cumprod differ"
            );
        }
    }
}

#[test]
fn timesteps_and_sigmas_are_identical() {
    let fixtures = Fixtures::load();
    let cases = fixtures.cases("timesteps");
    assert!(cases.len() > 300);
    for case in cases {
        let label = format!(
            "{} / {} / {} steps",
            case["kind"], case["config"], case["steps"]
        );
        let mut scheduler = fixtures.build(case);
        let steps = case["steps"].as_u64().expect("steps") as usize;
        scheduler
            .set_timesteps(steps)
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        let expected_timesteps = floats(&case["timesteps"]);
        let expected_sigmas = floats(&case["sigmas"]);
        let config = &fixtures.meta["configs"][case["config"].as_str().expect("config")];
        let float_timesteps = case["kind"] == "euler"
            && (config["use_karras_sigmas"] == true || config["timestep_type"] == "continuous");
        let timesteps_ok = if float_timesteps {
            // |t| >= 0.1 within 1e-6 relative, smaller ones within 1e-7 absolute.
            let got = scheduler.timesteps();
            got.len() == expected_timesteps.len()
                && got
                    .iter()
                    .zip(&expected_timesteps)
                    .all(|(g, e)| (g - e).abs() <= 1e-6 * e.abs().max(0.1))
        } else if is_zero_snr(&fixtures, case) && case["kind"] == "dpmpp-2m-karras" {
            // Karras timesteps come from the (shifted, see above) sigmas and are truncated for
            // the cosine schedule: 927.99 vs 928.0 gives 927 vs 928.
            all_close(scheduler.timesteps(), &expected_timesteps, 1.0, 0.0)
        } else {
            bits_equal(scheduler.timesteps(), &expected_timesteps)
        };
        let sigma_rel = if is_zero_snr(&fixtures, case) {
            5e-3
        } else {
            2.5e-7
        };
        assert!(
            timesteps_ok,
            "{label}: timesteps\n  got      {:?}\n  diffusers {expected_timesteps:?}",
            scheduler.timesteps()
        );
        assert!(
            all_close(scheduler.sigmas(), &expected_sigmas, 0.0, sigma_rel),
            "{label}: sigmas\n  got      {:?}\n  diffusers {expected_sigmas:?}",
            scheduler.sigmas()
        );
        let init = case["init_noise_sigma"].as_f64().expect("init_noise_sigma") as f32;
        let got = scheduler.init_noise_sigma();
        assert!(
            all_close(&[got], &[init], 0.0, sigma_rel),
            "{label}: init_noise_sigma {got} vs {init}"
        );
    }
}

#[test]
fn denoising_loops_match() {
    let fixtures = Fixtures::load();
    let device = Device::flex();
    let shape = fixtures.shape();
    let numel: usize = shape.iter().product();
    let (_, bank) = fixtures.tensor("model_outputs");
    let mut worst: BTreeMap<String, (f32, f32)> = BTreeMap::new();

    let cases = fixtures.cases("loops");
    assert!(cases.len() >= 25);
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let kind = case["kind"].as_str().expect("kind");
        let steps = case["steps"].as_u64().expect("steps") as usize;
        let zero_snr = is_zero_snr(&fixtures, case);
        let mut scheduler = fixtures.build(case);
        scheduler.set_timesteps(steps).expect("set_timesteps");
        scheduler
            .set_eta(case["eta"].as_f64().expect("eta") as f32)
            .expect("eta");
        // (The timesteps themselves are checked by `timesteps_and_sigmas_are_identical`.)
        assert_eq!(
            scheduler.timesteps().len(),
            floats(&case["timesteps"]).len(),
            "{name}"
        );

        // The initial latents come from the same generator the scheduler then draws from.
        let mut generator = TorchGenerator::new(case["seed"].as_u64().expect("seed"));
        let drawn = to_vec(
            generator
                .randn_tensor(shape, &device)
                .mul_scalar(scheduler.init_noise_sigma()),
        );
        let (_, initial) = fixtures.tensor(&format!("loop/{name}/initial"));
        // init_noise_sigma may be off by an ulp (see the module docs), the noise is exact.
        assert!(
            all_close(&drawn, &initial, 0.0, 2.5e-7),
            "{name}: initial latents"
        );

        let (_, expected_samples) = fixtures.tensor(&format!("loop/{name}/sample"));
        let expected_inputs = matches!(kind, "euler" | "euler-a")
            .then(|| fixtures.tensor(&format!("loop/{name}/model_input")).1);
        let mut sample = to_tensor(&initial, shape, &device);
        let (mut case_worst, mut case_worst_rel) = (0f32, 0f32);
        for i in 0..scheduler.timesteps().len() {
            let sample_values = to_vec(sample.clone());
            let input = to_vec(
                scheduler
                    .scale_model_input(sample.clone(), i)
                    .expect("scale_model_input"),
            );
            match &expected_inputs {
                Some(inputs) => {
                    let expected = &inputs[i * numel..(i + 1) * numel];
                    let ok = input
                        .iter()
                        .zip(expected)
                        .all(|(&g, &e)| sample_ok(g, e, zero_snr));
                    let err = max_abs_diff(&input, expected);
                    assert!(ok, "{name}: model input {i} off by {err:e}");
                }
                None => assert!(
                    bits_equal(&input, &sample_values),
                    "{name}: input {i} was scaled"
                ),
            }
            let model_output = to_tensor(&bank[i * numel..(i + 1) * numel], shape, &device);
            sample = scheduler
                .step(model_output, i, sample, &mut generator)
                .unwrap_or_else(|e| panic!("{name}: step {i}: {e}"));
            let got = to_vec(sample.clone());
            let expected = &expected_samples[i * numel..(i + 1) * numel];
            let err = max_abs_diff(&got, expected);
            let ok = got
                .iter()
                .zip(expected)
                .all(|(&g, &e)| sample_ok(g, e, zero_snr));
            assert!(ok, "{name}: step {i} off by {err:e}");
            case_worst = case_worst.max(err);
            let rel = got
                .iter()
                .zip(expected)
                .map(|(g, e)| (g - e).abs() / e.abs().max(1.0))
                .fold(0f32, f32::max);
            case_worst_rel = case_worst_rel.max(rel);
        }
        let group = if zero_snr {
            format!("{kind} (zero SNR)")
        } else {
            kind.to_string()
        };
        let entry = worst.entry(group).or_default();
        *entry = (entry.0.max(case_worst), entry.1.max(case_worst_rel));
    }
    for (kind, (abs, rel)) in &worst {
        eprintln!("loops: {kind}: max abs error {abs:e}, max error / max(1, |value|) {rel:e}");
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
        assert!(
            all_close(&got, &expected, 1e-5, 1e-6),
            "{key}: off by {err:e}"
        );
        worst = worst.max(err);
    }
    eprintln!("add_noise: max abs error {worst:e}");
}
