//! Project tasks: `cargo xtask <task>`.
//!
//! - `fixtures [--only PART ...]`: creates `.venv` with the pinned reference stack
//!   (`tests/fixtures/requirements.txt`) if needed, then regenerates `tests/data/` with
//!   `tests/fixtures/generate.py`.
//! - `fetch [--model-type T|all] [--base-repo R] [--no-face]`: downloads the weights of a fal
//!   model type (default `1_5-v1`) into the Hugging Face and insightface caches, as
//!   `faceid fetch` does.
//! - `bench [--rounds K] [--runs R] [WORKLOAD ...]`: the same full-size workloads here
//!   (`examples/bench_workload.rs`) and in PyTorch (`tests/bench/torch_workload.py`), alternating,
//!   2 threads each, K rounds (default 5) of R timed runs (default 1) per side; prints a table of
//!   medians, the ratio ours/PyTorch and each side's peak memory. Workloads that load a model
//!   folder first have `tests/bench/gen_models.py` write the full-size random models into
//!   `target/bench-models` (once).
//! - `clients`: builds `faceid` and drives `faceid serve` with fal's official Python and
//!   JavaScript clients (`tests/clients/run.sh`).
//! - `loadtest [--redis] [CLIENTS REQUESTS QUEUE]`: the bounded load test of the server on
//!   loopback; `--redis`: of the shared queue (two API nodes, one then two workers).
//! - `gpu-pack [--out DIR] [--profile P] [--wgsl] [--check]`: builds here what the GPU table
//!   needs on a machine without Rust or internet, in one folder of at most 64 MiB
//!   (`gpu_pack.rs`); `--check` runs it here in its reduced mode.
//! - `ci`: runs exactly what continuous integration runs (`.ci/run`).

mod gpu_pack;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("fixtures") => fixtures(&args[1..]),
        Some("fetch") => fetch(&args[1..]),
        Some("clients") => clients(),
        Some("bench") => bench(&args[1..]),
        Some("loadtest") => loadtest(&args[1..]),
        Some("gpu-pack") => gpu_pack::gpu_pack(&args[1..]),
        Some("ci") => run(Command::new("bash").arg(root().join(".ci/run"))),
        _ => Err(
            "usage: cargo xtask fixtures [--only noise|schedulers|sd|face|faceid|fp16|hf_cache ...] \
             | cargo xtask fetch [--model-type T|all] [--base-repo R] [--no-face] \
             | cargo xtask bench [--rounds K] [--runs R] [WORKLOAD ...] \
             | cargo xtask clients | cargo xtask loadtest [--redis] [CLIENTS REQUESTS QUEUE] \
             | cargo xtask gpu-pack [--out DIR] [--profile P] [--wgsl] [--check] | cargo xtask ci"
                .into(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

fn run(command: &mut Command) -> Result<(), String> {
    let status = command
        .status()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{command:?} failed with {status}"))
    }
}

/// `.venv` with the pinned reference stack (tests/fixtures/requirements.txt); its python.
fn reference_python() -> Result<PathBuf, String> {
    let root = root();
    let venv = root.join(".venv");
    let python = venv.join("bin/python");
    let requirements = root.join("tests/fixtures/requirements.txt");
    if !python.exists() {
        eprintln!("xtask: creating {}", venv.display());
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    }
    eprintln!("xtask: installing the pinned reference stack");
    run(Command::new(&python)
        .args(["-m", "pip", "install", "-q", "-r"])
        .arg(&requirements))?;
    Ok(python)
}

fn fixtures(extra: &[String]) -> Result<(), String> {
    let root = root();
    let python = reference_python()?;
    // One thread keeps the references reproducible and avoids oversubscription next to builds.
    run(Command::new(&python)
        .arg(root.join("tests/fixtures/generate.py"))
        .args(extra)
        .env("OMP_NUM_THREADS", "1"))
}

fn fetch(args: &[String]) -> Result<(), String> {
    let mut model_types = vec!["1_5-v1".to_string()];
    let mut base_repo = None;
    let mut face = true;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--model-type" => {
                model_types = vec![rest.next().ok_or("--model-type needs a value")?.clone()]
            }
            "--base-repo" => {
                base_repo = Some(rest.next().ok_or("--base-repo needs a value")?.clone())
            }
            "--no-face" => face = false,
            other => return Err(format!("fetch: unknown argument '{other}'")),
        }
    }
    let weights = faceid_hub::Weights::from_env().map_err(|e| e.to_string())?;
    if model_types == ["all"] {
        model_types = weights
            .manifest()
            .model_types
            .iter()
            .filter(|(_, entry)| {
                weights
                    .manifest()
                    .component(&entry.ip_adapter)
                    .is_ok_and(|c| c.published)
            })
            .map(|(name, _)| name.clone())
            .collect();
    }
    for model_type in model_types {
        let request = faceid_hub::ModelRequest {
            model_type: model_type.clone(),
            base_repo: base_repo.clone(),
            local: Default::default(),
            adapter: face,
            face_analysis: face,
        };
        let files = weights
            .resolve(&request, &mut faceid_hub::ProgressBars::default())
            .map_err(|e| e.to_string())?;
        eprintln!(
            "xtask: {model_type}: ready ({} file(s) downloaded), base model in {}",
            files.downloaded.len(),
            files.base.display()
        );
    }
    Ok(())
}

/// The build of the test command of README.md (same features, so nothing is rebuilt).
fn build_workspace() -> Result<(), String> {
    run(Command::new(env!("CARGO")).current_dir(root()).args([
        "build",
        "--workspace",
        "--features",
        "faceid-core/wgpu",
    ]))
}

fn clients() -> Result<(), String> {
    build_workspace()?;
    run(Command::new("bash")
        .current_dir(root())
        .arg("tests/clients/run.sh"))
}

fn loadtest(args: &[String]) -> Result<(), String> {
    // `--redis`: the shared queue (2 API nodes, 1 then 2 workers); otherwise one process.
    let redis = args.iter().any(|a| a == "--redis");
    let args: Vec<&String> = args.iter().filter(|a| *a != "--redis").collect();
    let value = |i: usize, default: &str| {
        args.get(i)
            .map_or_else(|| default.to_string(), |v| v.to_string())
    };
    let filter = if redis { "load_redis::" } else { "load::" };
    run(Command::new(env!("CARGO"))
        .current_dir(root())
        .args([
            "test",
            "--workspace",
            "--features",
            "faceid-core/wgpu",
            "--test",
            "it",
            "--",
        ])
        .args([filter, "--nocapture"])
        .env("FACEID_LOAD_TEST", "1")
        .env("FACEID_LOAD_CLIENTS", value(0, "8"))
        .env("FACEID_LOAD_REQUESTS", value(1, "4"))
        .env("FACEID_LOAD_QUEUE", value(2, "8")))
}

/// The floating-point operations of one call of `workload`, as PyTorch's `FlopCounterMode`
/// counts them in `tests/bench/torch_workload.py` (matrix products, convolutions, attention).
fn flop_count(python: &Path, workload: &str, models: &Path) -> Result<f64, String> {
    let output = Command::new(python)
        .arg(root().join("tests/bench/torch_workload.py"))
        .args([workload, "1", "2"])
        .env("OMP_NUM_THREADS", "2")
        .env("FACEID_BENCH_MODELS", models)
        .env("FACEID_BENCH_FLOPS", "1")
        .output()
        .map_err(|e| format!("cannot count the FLOPs of {workload}: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.lines().last().unwrap_or_default();
    let value: serde_json::Value = serde_json::from_str(line).map_err(|e| {
        format!(
            "no FLOP count for {workload} ({e}): {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    value["flops"]
        .as_f64()
        .ok_or(format!("no FLOP count for {workload}: {line}"))
}

fn bench(args: &[String]) -> Result<(), String> {
    let (mut rounds, mut runs, mut workloads) = (5usize, 1usize, Vec::new());
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let mut number = |name: &str| -> Result<usize, String> {
            rest.next()
                .and_then(|v| v.parse().ok())
                .ok_or(format!("{name} needs a number"))
        };
        match arg.as_str() {
            "--rounds" => rounds = number("--rounds")?,
            "--runs" => runs = number("--runs")?,
            other if other.starts_with('-') => {
                return Err(format!(
                    "unknown option {other}: usage: cargo xtask bench [--rounds N] [--runs N] \
                     [WORKLOAD...]"
                ));
            }
            other => workloads.push(other.to_string()),
        }
    }
    if workloads.is_empty() {
        workloads = [
            "unet-64",
            "unet-64-ip",
            "unet-96",
            "vae-decode-64",
            "text-encode",
            "clip-vision",
            "faceid-pipeline",
        ]
        .map(String::from)
        .to_vec();
    }
    let python = reference_python()?;
    let models = root().join("target/bench-models");
    if workloads
        .iter()
        .any(|w| w.starts_with("loop-") || w.starts_with("faceid-pipeline"))
    {
        eprintln!(
            "xtask: full-size models with random weights in {}",
            models.display()
        );
        run(Command::new(&python)
            .arg(root().join("tests/bench/gen_models.py"))
            .arg(&models))?;
    }
    run(Command::new(env!("CARGO")).current_dir(root()).args([
        "build",
        "--workspace",
        "--features",
        "faceid-core/wgpu",
        "--examples",
    ]))?;
    let ours = root().join("target/debug/examples/bench_workload");
    // Per workload that reports them: the weights each component keeps on the device.
    let weights = std::cell::RefCell::new(Vec::<(String, Vec<serde_json::Value>)>::new());
    let measure = |command: &mut Command| -> Result<(Vec<f64>, f64), String> {
        let output = command
            .output()
            .map_err(|e| format!("cannot run {command:?}: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "{command:?} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        let line = String::from_utf8_lossy(&output.stdout);
        let line = line.lines().last().unwrap_or_default();
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("bad output {line:?}: {e}"))?;
        let times = value["times"]
            .as_array()
            .map(|t| t.iter().filter_map(|v| v.as_f64()).collect())
            .unwrap_or_default();
        if let Some(parts) = value["weights"].as_array().filter(|p| !p.is_empty()) {
            let workload = value["workload"].as_str().unwrap_or("?").to_string();
            let mut all = weights.borrow_mut();
            if !all.iter().any(|(w, _)| *w == workload) {
                all.push((workload, parts.clone()));
            }
        }
        Ok((times, value["peak_rss_mib"].as_f64().unwrap_or(f64::NAN)))
    };
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    // The workloads OpenVINO runs too (tests/bench/openvino_workload.py), as a third column.
    const OPENVINO: [&str; 3] = ["unet-64", "vae-decode-64", "text-encode"];
    let mut table = Vec::new();
    for workload in &workloads {
        let (mut mine, mut theirs, mut openvino) = (Vec::new(), Vec::new(), Vec::new());
        let (mut mine_rss, mut theirs_rss, mut openvino_rss) = (0f64, 0f64, 0f64);
        for round in 0..rounds {
            eprintln!("xtask: {workload}, round {}/{rounds}", round + 1);
            let (t, rss) = measure(
                Command::new(&ours)
                    .args([workload.as_str(), &runs.to_string()])
                    .env("RAYON_NUM_THREADS", "2")
                    .env("FACEID_BENCH_MODELS", &models),
            )?;
            mine.extend(t);
            mine_rss = mine_rss.max(rss);
            let (t, rss) = measure(
                Command::new(&python)
                    .arg(root().join("tests/bench/torch_workload.py"))
                    .args([workload.as_str(), &runs.to_string(), "2"])
                    .env("OMP_NUM_THREADS", "2")
                    .env("FACEID_BENCH_MODELS", &models),
            )?;
            theirs.extend(t);
            theirs_rss = theirs_rss.max(rss);
            if OPENVINO.contains(&workload.as_str()) {
                let (t, rss) = measure(
                    Command::new(&python)
                        .arg(root().join("tests/bench/openvino_workload.py"))
                        .args([workload.as_str(), &runs.to_string(), "2"])
                        .env("OMP_NUM_THREADS", "2")
                        .env("FACEID_BENCH_MODELS", &models),
                )?;
                openvino.extend(t);
                openvino_rss = openvino_rss.max(rss);
            }
        }
        let n = mine.len();
        let (a, b) = (median(mine), median(theirs));
        // The work of one call, as PyTorch counts it, after the timed rounds.
        let flops = flop_count(&python, workload, &models)?;
        let rate = |seconds: f64| format!("{:.0}", flops / seconds / 1e9);
        let (c, ratio, c_rss, c_rate) = if openvino.is_empty() {
            ("-".into(), "-".into(), "-".into(), "-".into())
        } else {
            let c = median(openvino);
            (
                format!("{c:.3} s"),
                format!("{:.2}x", a / c),
                format!("{openvino_rss:.0} MiB"),
                rate(c),
            )
        };
        let row = format!(
            "| {workload} | {n} | {a:.3} s | {b:.3} s | {c} | {:.2}x | {ratio} | {:.1} | {} / {} / {c_rate} | {mine_rss:.0} MiB | {theirs_rss:.0} MiB | {c_rss} |",
            a / b,
            flops / 1e9,
            rate(a),
            rate(b),
        );
        // Each row as soon as its workload is measured, so a long run that is stopped keeps
        // what it measured.
        eprintln!("xtask: {row}");
        table.push(row);
    }
    println!(
        "| workload | runs each | faceid (flex) median | PyTorch median | OpenVINO median | ours/PyTorch | ours/OpenVINO | GFLOP per call | GFLOP/s ours / PyTorch / OpenVINO | faceid peak RSS | PyTorch peak RSS | OpenVINO peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for row in table {
        println!("{row}");
    }
    for (workload, parts) in weights.into_inner() {
        println!("\nWeights on the device, {workload}:\n");
        println!("| component | parameters | f32 | f16 (VAE kept f32) |");
        println!("|---|---|---|---|");
        let mib = |part: &serde_json::Value, key: &str| part[key].as_f64().unwrap_or(f64::NAN);
        let (mut all, mut half) = (0.0, 0.0);
        for part in &parts {
            let (f32_mib, f16_mib) = (mib(part, "mib"), mib(part, "mib_f16"));
            all += f32_mib;
            half += f16_mib;
            println!(
                "| {} | {} | {f32_mib:.1} MiB | {f16_mib:.1} MiB |",
                part["name"].as_str().unwrap_or("?"),
                part["parameters"]
            );
        }
        println!("| all | | {all:.1} MiB | {half:.1} MiB |");
    }
    Ok(())
}
