//! Config parsing and the errors of the scheduler API (no fixtures needed).

use burn::tensor::Tensor;
use faceid_core::{Device, TorchGenerator};
use faceid_scheduler::{
    BetaSchedule, PredictionType, SchedulerConfig, SchedulerError, SchedulerKind, SolverType,
    TimestepSpacing,
};

const SD15: &str = r#"{
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.6.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": false,
    "skip_prk_steps": true,
    "steps_offset": 1,
    "trained_betas": null,
    "clip_sample": false
}"#;

fn sd15() -> SchedulerConfig {
    SchedulerConfig::from_json_str(SD15).expect("valid config")
}

fn zeros(shape: [usize; 4]) -> Tensor<4> {
    Tensor::zeros(shape, &Device::flex())
}

#[test]
fn parses_a_diffusers_config_ignoring_unknown_keys() {
    let config = sd15();
    assert_eq!(config.class_name.as_deref(), Some("PNDMScheduler"));
    assert_eq!(config.num_train_timesteps, Some(1000));
    assert_eq!(config.beta_start, Some(0.00085));
    assert_eq!(config.beta_schedule, Some(BetaSchedule::ScaledLinear));
    assert_eq!(config.trained_betas, None);
    assert_eq!(config.steps_offset, Some(1));
    assert_eq!(config.set_alpha_to_one, Some(false));
    assert_eq!(config.prediction_type, None);
    assert_eq!(config.timestep_spacing, None);
    let value = config.to_json_value();
    assert_eq!(value["beta_schedule"], "scaled_linear");
    assert_eq!(
        SchedulerConfig::from_json_value(&value).expect("round trip"),
        config
    );
}

#[test]
fn use_default_values_keys_are_dropped() {
    let config = SchedulerConfig::from_json_str(
        r#"{"timestep_spacing": "trailing", "prediction_type": "v_prediction",
            "_use_default_values": ["timestep_spacing"]}"#,
    )
    .expect("valid config");
    assert_eq!(config.timestep_spacing, None);
    assert_eq!(config.prediction_type, Some(PredictionType::VPrediction));
}

#[test]
fn solver_type_aliases_map_to_midpoint() {
    for name in ["logrho", "bh1", "bh2", "midpoint"] {
        let config = SchedulerConfig::from_json_str(&format!(r#"{{"solver_type": "{name}"}}"#))
            .expect("valid");
        assert_eq!(config.solver_type, Some(SolverType::Midpoint));
    }
}

#[test]
fn bad_values_are_typed_errors() {
    let cases = [
        (r#"{"beta_schedule": "cosine"}"#, "beta_schedule"),
        (r#"{"prediction_type": "noise"}"#, "prediction_type"),
        (r#"{"timestep_spacing": "even"}"#, "timestep_spacing"),
        (r#"{"final_sigmas_type": "one"}"#, "final_sigmas_type"),
        (r#"{"beta_start": "0.1"}"#, "beta_start"),
        (r#"{"num_train_timesteps": 0}"#, "num_train_timesteps"),
        (r#"{"num_train_timesteps": 10.5}"#, "num_train_timesteps"),
        (r#"{"steps_offset": 1.5}"#, "steps_offset"),
        (r#"{"clip_sample": "no"}"#, "clip_sample"),
        (r#"{"trained_betas": [0.1, "x"]}"#, "trained_betas"),
        (r#"[1, 2]"#, "<root>"),
    ];
    for (json, expected_key) in cases {
        match SchedulerConfig::from_json_str(json) {
            Err(SchedulerError::InvalidValue { key, .. }) => {
                assert_eq!(key, expected_key, "{json}")
            }
            other => panic!("{json}: expected InvalidValue, got {other:?}"),
        }
    }
    let message = SchedulerConfig::from_json_str(r#"{"beta_schedule": "cosine"}"#)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("cosine") && message.contains("squaredcos_cap_v2"),
        "{message}"
    );
    assert!(matches!(
        SchedulerConfig::from_json_str("{not json"),
        Err(SchedulerError::Json(_))
    ));
    assert!(matches!(
        SchedulerConfig::from_file("/nonexistent/scheduler_config.json"),
        Err(SchedulerError::Io { .. })
    ));
    assert_eq!(
        "trailing".parse::<TimestepSpacing>().expect("known"),
        TimestepSpacing::Trailing
    );
}

#[test]
fn scheduler_names_parse() {
    for kind in SchedulerKind::ALL {
        assert_eq!(
            kind.name().parse::<SchedulerKind>().expect("known name"),
            kind
        );
        assert_eq!(kind.to_string(), kind.name());
    }
    assert_eq!(
        "dpmpp-2m-karras".parse::<SchedulerKind>().expect("known"),
        SchedulerKind::DpmSolverMultistep2M { karras: true }
    );
    for bad in ["", "DDIM", "euler_a", "dpm++", "pndm"] {
        match bad.parse::<SchedulerKind>() {
            Err(SchedulerError::UnknownScheduler(name)) => assert_eq!(name, bad),
            other => panic!("{bad:?}: expected UnknownScheduler, got {other:?}"),
        }
    }
}

#[test]
fn step_counts_out_of_range_are_errors() {
    for kind in SchedulerKind::ALL {
        let mut scheduler = kind.build(&sd15()).expect("builds");
        for steps in [0, 1001] {
            match scheduler.set_timesteps(steps) {
                Err(SchedulerError::InvalidStepCount {
                    steps: s,
                    max: 1000,
                }) => assert_eq!(s, steps),
                other => panic!("{kind} with {steps} steps: got {other:?}"),
            }
        }
        scheduler.set_timesteps(1000).expect("1000 steps are fine");
        assert_eq!(scheduler.timesteps().len(), 1000);
    }
}

#[test]
fn using_a_scheduler_before_set_timesteps_is_an_error() {
    let mut generator = TorchGenerator::new(0);
    for kind in SchedulerKind::ALL {
        let mut scheduler = kind.build(&sd15()).expect("builds");
        assert!(scheduler.timesteps().is_empty());
        let x = zeros([1, 4, 2, 2]);
        assert!(matches!(
            scheduler.scale_model_input(x.clone(), 0),
            Err(SchedulerError::TimestepsNotSet)
        ));
        assert!(matches!(
            scheduler.step(x.clone(), 0, x.clone(), &mut generator),
            Err(SchedulerError::TimestepsNotSet)
        ));
        assert!(matches!(
            scheduler.add_noise(x.clone(), x, 0),
            Err(SchedulerError::TimestepsNotSet)
        ));
    }
}

#[test]
fn bad_step_indices_and_shapes_are_errors() {
    let mut generator = TorchGenerator::new(0);
    for kind in SchedulerKind::ALL {
        let mut scheduler = kind.build(&sd15()).expect("builds");
        scheduler.set_timesteps(4).expect("4 steps");
        let x = zeros([1, 4, 2, 2]);
        assert!(matches!(
            scheduler.step(x.clone(), 4, x.clone(), &mut generator),
            Err(SchedulerError::StepIndexOutOfRange { index: 4, len: 4 })
        ));
        assert!(matches!(
            scheduler.step(zeros([1, 4, 2, 3]), 0, x.clone(), &mut generator),
            Err(SchedulerError::ShapeMismatch(..))
        ));
        assert!(matches!(
            scheduler.add_noise(x.clone(), zeros([2, 4, 2, 2]), 0),
            Err(SchedulerError::ShapeMismatch(..))
        ));
        assert!(matches!(
            scheduler.set_eta(-0.5),
            Err(SchedulerError::InvalidConfig(_))
        ));
        assert!(matches!(
            scheduler.set_eta(f32::NAN),
            Err(SchedulerError::InvalidConfig(_))
        ));
    }
}

#[test]
fn multistep_solver_must_be_stepped_in_order() {
    let mut generator = TorchGenerator::new(0);
    let mut scheduler = SchedulerKind::DpmSolverMultistep2M { karras: false }
        .build(&sd15())
        .expect("builds");
    scheduler.set_timesteps(10).expect("10 steps");
    let x = zeros([1, 4, 2, 2]);
    // An img2img loop may start anywhere...
    let x = scheduler
        .step(x.clone(), 3, x, &mut generator)
        .expect("first step");
    let x = scheduler
        .step(x.clone(), 4, x, &mut generator)
        .expect("next step");
    // ...but must then go on in order.
    assert!(matches!(
        scheduler.step(x.clone(), 6, x.clone(), &mut generator),
        Err(SchedulerError::StepOutOfOrder {
            index: 6,
            previous: 4
        })
    ));
    // set_timesteps starts over.
    scheduler.set_timesteps(10).expect("10 steps");
    scheduler
        .step(x.clone(), 0, x, &mut generator)
        .expect("fresh start");
}

#[test]
fn unsupported_options_are_refused() {
    let with = |extra: &str| {
        SchedulerConfig::from_json_str(&format!(r#"{{"beta_schedule": "scaled_linear", {extra}}}"#))
            .expect("valid")
    };
    let thresholding = with(r#""thresholding": true"#);
    for kind in [
        SchedulerKind::Ddim,
        SchedulerKind::DpmSolverMultistep2M { karras: true },
    ] {
        assert!(
            matches!(
                kind.build(&thresholding),
                Err(SchedulerError::Unsupported { .. })
            ),
            "{kind}"
        );
    }
    // Euler takes no `thresholding` argument in diffusers, so the key is ignored there.
    SchedulerKind::Euler
        .build(&thresholding)
        .expect("ignored by Euler");

    let sample = with(r#""prediction_type": "sample""#);
    assert!(matches!(
        SchedulerKind::EulerAncestral.build(&sample),
        Err(SchedulerError::Unsupported { .. })
    ));
    SchedulerKind::Euler
        .build(&sample)
        .expect("Euler supports sample prediction");

    for extra in [
        r#""use_exponential_sigmas": true"#,
        r#""use_beta_sigmas": true"#,
        r#""interpolation_type": "log_linear""#,
    ] {
        assert!(
            matches!(
                SchedulerKind::Euler.build(&with(extra)),
                Err(SchedulerError::Unsupported { .. })
            ),
            "{extra}"
        );
    }
    let learned = with(r#""variance_type": "learned_range""#);
    assert!(matches!(
        SchedulerKind::DpmSolverMultistep2M { karras: false }.build(&learned),
        Err(SchedulerError::Unsupported { .. })
    ));
    let fixed = with(r#""variance_type": "fixed_small""#);
    SchedulerKind::DpmSolverMultistep2M { karras: false }
        .build(&fixed)
        .expect("fixed variances do not matter");
}

#[test]
fn trained_betas_must_match_the_step_count() {
    let config =
        SchedulerConfig::from_json_str(r#"{"trained_betas": [0.1, 0.2, 0.3]}"#).expect("valid");
    assert!(matches!(
        SchedulerKind::Ddim.build(&config),
        Err(SchedulerError::InvalidConfig(_))
    ));
    let config = SchedulerConfig::from_json_str(
        r#"{"trained_betas": [0.1, 0.2, 0.3], "num_train_timesteps": 3}"#,
    )
    .expect("valid");
    let mut scheduler = SchedulerKind::Ddim.build(&config).expect("builds");
    scheduler.set_timesteps(3).expect("3 steps");
    assert_eq!(scheduler.timesteps(), &[2.0, 1.0, 0.0]);
}

#[test]
fn defaults_follow_the_target_scheduler() {
    // Same config, each kind's own default spacing: DDIM leading (+ steps_offset), the others
    // linspace.
    let mut ddim = SchedulerKind::Ddim.build(&sd15()).expect("builds");
    ddim.set_timesteps(4).expect("4 steps");
    assert_eq!(ddim.timesteps(), &[751.0, 501.0, 251.0, 1.0]);
    assert_eq!(ddim.init_noise_sigma(), 1.0);
    let mut euler = SchedulerKind::Euler.build(&sd15()).expect("builds");
    euler.set_timesteps(4).expect("4 steps");
    assert_eq!(euler.timesteps(), &[999.0, 666.0, 333.0, 0.0]);
    assert_eq!(euler.sigmas().len(), 5);
    assert_eq!(euler.sigmas()[4], 0.0);
    assert_eq!(euler.init_noise_sigma(), euler.sigmas()[0]);
    let mut dpm = SchedulerKind::DpmSolverMultistep2M { karras: false }
        .build(&sd15())
        .expect("builds");
    dpm.set_timesteps(4).expect("4 steps");
    assert_eq!(dpm.timesteps(), &[999.0, 749.0, 500.0, 250.0]);
}

#[test]
fn trailing_spacing_keeps_diffusers_extra_step() {
    // np.arange(1000, 0, -1000 / 61) has 62 values, the last about -6e-13, so diffusers runs 62
    // steps ending at timestep -1; this port does the same.
    let config =
        SchedulerConfig::from_json_str(r#"{"timestep_spacing": "trailing"}"#).expect("valid");
    for kind in [SchedulerKind::Ddim, SchedulerKind::Euler] {
        let mut scheduler = kind.build(&config).expect("builds");
        scheduler.set_timesteps(61).expect("61 steps");
        assert_eq!(scheduler.timesteps().len(), 62, "{kind}");
        assert_eq!(scheduler.timesteps()[61], -1.0, "{kind}");
        scheduler.set_timesteps(60).expect("60 steps");
        assert_eq!(scheduler.timesteps().len(), 60, "{kind}");
    }
}

#[test]
fn ddim_eta_draws_noise_and_eta_zero_does_not() {
    let device = Device::flex();
    let mut scheduler = SchedulerKind::Ddim.build(&sd15()).expect("builds");
    scheduler.set_timesteps(5).expect("5 steps");
    let x = TorchGenerator::new(1).randn_tensor([1, 4, 3, 3], &device);
    let eps = TorchGenerator::new(2).randn_tensor([1, 4, 3, 3], &device);
    let mut generator = TorchGenerator::new(3);
    let deterministic = scheduler
        .step(eps.clone(), 0, x.clone(), &mut generator)
        .expect("step");
    assert_eq!(
        generator.randn(4),
        TorchGenerator::new(3).randn(4),
        "eta 0 draws nothing"
    );
    scheduler.set_eta(1.0).expect("eta");
    let noisy = scheduler.step(eps, 0, x, &mut generator).expect("step");
    let diff: f32 = deterministic.sub(noisy).abs().max().into_scalar();
    assert!(diff > 1e-3);
}
