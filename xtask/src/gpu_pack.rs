//! `cargo xtask gpu-pack [--out DIR] [--profile P] [--wgsl] [--check]`: everything a GPU machine without a Rust
//! toolchain or internet needs to print the GPU table in one call, built here, in one folder that
//! needs nothing else from this repository.
//!
//! The folder (default `target/gpu-pack`, at most [`LIMIT`] bytes) holds:
//! - `payload.tar.xz`: one solid xz stream (the three binaries share most of their code) of
//!   - `bin/faceid`, `bin/bench_workload`, `bin/parity`: the `faceid` binary, the bench example and
//!     the test binary of `faceid-pipeline` (the parity tests on every device of the build), all
//!     built with `vulkan` (wgpu compiling to SPIR-V on Vulkan adapters, where cooperative
//!     matrices reach the tensor cores) in one compilation (profile `release`, or `--profile
//!     dev`, also at opt-level 3), stripped; `--wgsl` builds them with `wgpu` alone (WGSL shaders),
//!     for a Vulkan driver without `VK_KHR_workgroup_memory_explicit_layout` (Mesa's lavapipe),
//!     for which cubecl 0.11.3 writes invalid SPIR-V;
//!   - `bin/bench_workload-wgsl`: with `vulkan`, the bench example built with `wgpu` alone as
//!     well, which the table falls back to for a workload the SPIR-V build fails on;
//!   - [`PAYLOAD`]: the scripts, configs and fixtures the run reads, at their paths here;
//!   - `wheels/`: diffusers and what insightface's `FaceAnalysis` imports, for CPython 3.12 on
//!     manylinux x86-64, at the versions of `.venv` (the pinned reference stack), rewritten
//!     without zip compression so that xz compresses them with the rest (half the size), and
//!     insightface's source archive (built there; it has no wheel);
//! - `gl/`: the Debian packages of the Vulkan loader (`libvulkan1`) and of the GL dispatch
//!   libraries NVIDIA's Vulkan driver links against (`libglvnd0`, `libglx0`, `libegl1`, ...), amd64;
//! - `run.sh`: `tests/bench/gpu_run.sh`, which unpacks the payload, runs the parity checks and
//!   the table;
//! - `commit.txt`: the commit the binaries were built from (and whether the tree had changes),
//!   which `run.sh` prints first.
//!
//! `--check` then runs `run.sh --reduced` here from an empty folder, on whatever Vulkan device
//! this machine has (Mesa's lavapipe on a CPU machine, with `--wgsl`), with `.venv`'s Python and
//! `target/bench-models`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{reference_python, root, run};

/// The features of the default build: wgpu compiling SPIR-V on Vulkan adapters.
const VULKAN: &str = "faceid-core/vulkan";
/// The features of the WGSL build.
const WGSL: &str = "faceid-core/wgpu";

/// The most the pack may hold: what a GPU machine reached through a small upload takes in one
/// transfer.
const LIMIT: u64 = 64 * 1024 * 1024;

/// The repository's files and folders the run reads (`tests/bench`'s scripts with the fixture
/// generators they import, the model configs and built-in detector, and the fixtures of the
/// parity tests it runs: SD 1.5's and FaceID's, not SDXL's, whose 33 MB would not fit).
const PAYLOAD: [&str; 10] = [
    "tests/bench",
    "tests/fixtures/gen_face.py",
    "tests/fixtures/gen_faceid.py",
    "weights",
    "tests/data/sd",
    "tests/data/faceid",
    "tests/data/fp16",
    "tests/data/tokenizer",
    "tests/data/face/arcface_r50_bn.onnx",
    "tests/data/faces/astronaut.png",
];

/// The Vulkan loader and what NVIDIA's Vulkan driver (`libGLX_nvidia`) loads beside it.
const GL_PACKAGES: [&str; 7] = [
    "libvulkan1",
    "libglvnd0",
    "libglx0",
    "libgl1",
    "libegl1",
    "libgles2",
    "libopengl0",
];

/// The distributions `FaceAnalysis` and the FaceID workload import that a CUDA PyTorch image
/// may lack; their versions come from `.venv`.
const WHEELS: [&str; 12] = [
    "diffusers",
    "albumentations",
    "albucore",
    "pydantic",
    "pydantic-core",
    "annotated-types",
    "typing-inspection",
    "prettytable",
    "easydict",
    "wcwidth",
    "stringzilla",
    "simsimd",
];

pub fn gpu_pack(args: &[String]) -> Result<(), String> {
    let mut out = root().join("target/gpu-pack");
    let mut check = false;
    let mut features = VULKAN;
    let mut profile = "release".to_string();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--out" => out = PathBuf::from(rest.next().ok_or("--out needs a folder")?),
            "--check" => check = true,
            "--wgsl" => features = WGSL,
            "--profile" => profile = rest.next().ok_or("--profile needs a name")?.clone(),
            other => return Err(format!("gpu-pack: unknown argument '{other}'")),
        }
    }
    let python = reference_python()?;
    if out.exists() {
        std::fs::remove_dir_all(&out)
            .map_err(|e| format!("cannot empty {}: {e}", out.display()))?;
    }
    std::fs::create_dir_all(out.join("gl"))
        .map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let staging = root().join("target/gpu-pack-staging");
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(staging.join("bin"))
        .map_err(|e| format!("cannot create {}: {e}", staging.display()))?;
    for (name, binary) in build(&profile, features)? {
        let stripped = staging.join("bin").join(&name);
        std::fs::copy(&binary, &stripped)
            .map_err(|e| format!("cannot copy {}: {e}", binary.display()))?;
        run(Command::new("strip").arg(&stripped))?;
    }
    if features == VULKAN {
        let stripped = staging.join("bin/bench_workload-wgsl");
        std::fs::copy(build_bench(&profile, WGSL)?, &stripped)
            .map_err(|e| format!("cannot copy the WGSL bench: {e}"))?;
        run(Command::new("strip").arg(&stripped))?;
    }
    wheels(&python, &staging.join("wheels"))?;
    eprintln!(
        "xtask: compressing the binaries and {} paths into payload.tar.xz",
        PAYLOAD.len()
    );
    let archive = std::fs::File::create(out.join("payload.tar.xz")).map_err(|e| e.to_string())?;
    let mut xz = Command::new("xz")
        .args(["-c", "-T1", "--lzma2=preset=9,dict=192MiB"])
        .stdin(std::process::Stdio::piped())
        .stdout(archive)
        .spawn()
        .map_err(|e| format!("cannot start xz: {e}"))?;
    // The command holds the pipe's writing end until it is dropped, at the end of this statement.
    run(Command::new("tar")
        .args(["-c", "-f", "-", "-C"])
        .arg(&staging)
        .args(["bin", "wheels"])
        .arg("-C")
        .arg(root())
        .args(PAYLOAD)
        .stdout(xz.stdin.take().expect("piped above")))?;
    if !xz.wait().map_err(|e| e.to_string())?.success() {
        return Err("xz failed".into());
    }
    std::fs::remove_dir_all(&staging).map_err(|e| e.to_string())?;
    loader(&out.join("gl"))?;
    std::fs::copy(root().join("tests/bench/gpu_run.sh"), out.join("run.sh"))
        .map_err(|e| format!("cannot copy the script: {e}"))?;
    std::fs::write(out.join("commit.txt"), commit()?)
        .map_err(|e| format!("cannot write commit.txt: {e}"))?;

    let size = folder_size(&out)?;
    eprintln!(
        "xtask: {} is {:.1} MiB (limit {} MiB)",
        out.display(),
        size as f64 / 1048576.0,
        LIMIT / 1048576
    );
    if size > LIMIT {
        return Err(format!(
            "the pack is {size} bytes, over the device machine's {LIMIT}"
        ));
    }
    if check {
        // From an empty folder, so that the run reads nothing of this repository.
        let away = std::env::temp_dir().join("faceid-gpu-pack-check");
        let _ = std::fs::remove_dir_all(&away);
        std::fs::create_dir_all(&away).map_err(|e| e.to_string())?;
        run(Command::new("bash")
            .arg(out.join("run.sh"))
            .arg("--reduced")
            .current_dir(&away)
            .env("FACEID_PYTHON", &python)
            .env("FACEID_BENCH_MODELS", root().join("target/bench-models"))
            .env("OUT", out.join("out")))?;
    }
    Ok(())
}

/// The commit of the working tree, and whether it has changes, in one line.
fn commit() -> Result<String, String> {
    let git = |args: &[&str]| {
        let output = Command::new("git")
            .current_dir(root())
            .args(args)
            .output()
            .map_err(|e| format!("cannot run git: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "git {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    };
    let head = git(&["log", "-1", "--format=%H %cI %s"])?;
    let changes = git(&["status", "--porcelain", "--untracked-files=no"])?;
    Ok(if changes.is_empty() {
        format!("{head}\n")
    } else {
        format!("{head} (with uncommitted changes)\n")
    })
}

/// The bench example alone, built with `features` in `profile`; its path.
fn build_bench(profile: &str, features: &str) -> Result<PathBuf, String> {
    run(cargo("build", profile, features).args(["--example", "bench_workload"]))?;
    Ok(profile_dir(profile).join("examples/bench_workload"))
}

/// `cargo VERB` over the workspace with `features` in `profile`.
fn cargo(verb: &str, profile: &str, features: &str) -> Command {
    let mut command = Command::new(env!("CARGO"));
    command.current_dir(root()).args([
        verb,
        "--profile",
        profile,
        "--workspace",
        "--features",
        features,
    ]);
    command
}

fn profile_dir(profile: &str) -> PathBuf {
    root()
        .join("target")
        .join(if profile == "dev" { "debug" } else { profile })
}

/// Builds the three binaries with `features` in `profile`, the same for all three so that one
/// compilation serves them; their names in the pack and paths.
fn build(profile: &str, features: &str) -> Result<Vec<(String, PathBuf)>, String> {
    run(cargo("build", profile, features).args(["--bins", "--examples"]))?;
    // The test binary's path is only known from cargo's messages.
    let output = cargo("test", profile, features)
        .args(["--no-run", "--message-format", "json"])
        .output()
        .map_err(|e| format!("cannot build the parity tests: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "building the parity tests failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let parity = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| {
            m["profile"]["test"] == true
                && m["target"]["name"] == "it"
                && m["package_id"]
                    .as_str()
                    .is_some_and(|id| id.contains("crates/faceid-pipeline#"))
        })
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .ok_or("cargo named no executable for faceid-pipeline's tests")?;
    let dir = profile_dir(profile);
    Ok(vec![
        ("faceid".into(), dir.join("faceid")),
        ("bench_workload".into(), dir.join("examples/bench_workload")),
        ("parity".into(), parity),
    ])
}

/// [`GL_PACKAGES`] for amd64 from Debian: without the GL dispatch libraries NVIDIA's Vulkan
/// driver does not load, and wgpu finds no adapter.
fn loader(dir: &Path) -> Result<(), String> {
    let lists = std::env::temp_dir().join("faceid-gpu-pack-apt");
    std::fs::create_dir_all(lists.join("partial")).map_err(|e| e.to_string())?;
    let options = [
        "-oAPT::Architecture=amd64".to_string(),
        "-oAPT::Architectures=amd64".to_string(),
        format!("-oDir::State::Lists={}", lists.display()),
    ];
    run(Command::new("apt-get")
        .args(&options)
        .args(["-qq", "update"]))?;
    run(Command::new("apt-get")
        .args(&options)
        .args(["-qq", "download"])
        .args(GL_PACKAGES)
        .current_dir(dir))
}

/// The wheels of [`WHEELS`] at `.venv`'s versions, stored without compression, and
/// insightface's source archive.
fn wheels(python: &Path, dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let freeze = Command::new(python)
        .args(["-m", "pip", "freeze"])
        .output()
        .map_err(|e| format!("cannot list .venv: {e}"))?;
    let freeze = String::from_utf8_lossy(&freeze.stdout);
    let normal = |name: &str| name.to_lowercase().replace('_', "-");
    let version = |name: &str| {
        freeze.lines().find_map(|line| {
            let (n, v) = line.split_once("==")?;
            (normal(n) == normal(name)).then(|| v.to_string())
        })
    };
    let mut pinned = Vec::new();
    for name in WHEELS {
        let v = version(name).ok_or(format!("{name} is not installed in .venv"))?;
        pinned.push(format!("{name}=={v}"));
    }
    let mut command = Command::new(python);
    command.args([
        "-m",
        "pip",
        "download",
        "-q",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        "3.12",
        "--implementation",
        "cp",
    ]);
    for platform in [
        "manylinux_2_28_x86_64",
        "manylinux_2_27_x86_64",
        "manylinux_2_17_x86_64",
        "manylinux2014_x86_64",
    ] {
        command.args(["--platform", platform]);
    }
    run(command.arg("-d").arg(dir).args(&pinned))?;
    // A wheel is a zip: stored rather than deflated, its files compress with the whole payload.
    run(Command::new(python).arg("-c").arg(RESTORE_WHEELS).arg(dir))?;

    // insightface publishes only a source archive: taken from the index with its digest.
    let v = version("insightface").ok_or("insightface is not installed in .venv")?;
    let file = format!("insightface-{v}.tar.gz");
    let index = Command::new("curl")
        .args(["-fsS", "https://pypi.org/simple/insightface/"])
        .output()
        .map_err(|e| format!("cannot read the package index: {e}"))?;
    let index = String::from_utf8_lossy(&index.stdout);
    let url = index
        .split('"')
        .find(|part| part.starts_with("https://") && part.contains(&format!("/{file}#sha256=")))
        .ok_or(format!("the package index has no {file}"))?;
    let (url, digest) = url.split_once("#sha256=").expect("checked above");
    let target = dir.join(&file);
    run(Command::new("curl")
        .args(["-fsSL", "-o"])
        .arg(&target)
        .arg(url))?;
    let sum = Command::new("sha256sum")
        .arg(&target)
        .output()
        .map_err(|e| e.to_string())?;
    if !String::from_utf8_lossy(&sum.stdout).starts_with(digest) {
        return Err(format!("{file} does not match the index's sha256 {digest}"));
    }
    Ok(())
}

/// Rewrites every `*.whl` of the folder given as argument with its members stored.
const RESTORE_WHEELS: &str = "
import pathlib, sys, zipfile
for wheel in pathlib.Path(sys.argv[1]).glob('*.whl'):
    stored = wheel.with_suffix('.stored')
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(stored, 'w', zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            info.compress_type = zipfile.ZIP_STORED
            dst.writestr(info, data)
    stored.replace(wheel)
";

fn folder_size(dir: &Path) -> Result<u64, String> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        let meta = entry.metadata().map_err(|e| e.to_string())?;
        total += if meta.is_dir() {
            folder_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}
