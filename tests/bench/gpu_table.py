"""The table of the GPU run (tests/bench/gpu_run.sh): each workload of examples/bench_workload.rs
on wgpu in f16 against tests/bench/torch_workload.py on CUDA in f16 (diffusers' defaults: SDPA
attention), one process per side and workload, sides alternating.

    python tests/bench/gpu_table.py full|reduced BENCH_WORKLOAD PYTHON OUT_DIR

Per side: the median of the timed runs (after the workload's warm-up), denoising steps per
second, and the GPU memory the process held at its peak, sampled every 0.1 s with nvidia-smi as
the rise of the GPU's used memory over its level before the process started (CUDA context and
allocator caches included; PyTorch's own `max_memory_allocated` is shown beside it). Reduced
mode (any Vulkan device, e.g. Mesa's lavapipe): the text encoder alone, 2 runs, transformers on the
CPU in f32, no GPU memory. Writes OUT_DIR/runs.jsonl and OUT_DIR/table.md and prints the table,
each row as soon as its workload is measured; then OUT_DIR/kernels.md: for each workload but the
guidance loop, ours runs once more with every GPU kernel timed on the device, which says how much
of the run the GPU computes and which kernels take that time. A workload whose run fails with
the pack's SPIR-V build of the bench is run again with its WGSL build (`BENCH_WORKLOAD-wgsl`
beside it); each row names the shader compiler ours ran with, which a SPIR-V build also falls
back to where the driver lacks what its SPIR-V needs.

FACEID_GPU_DEADLINE (seconds since the epoch) bounds the whole table: each side runs with what is
left as its timeout and is shown as `timeout` if it runs out; a workload that would start with
less than MIN_START_S left is shown as `skipped`; a side that exits with an error, as `failed`
(its error output is printed). A time-limited call so still prints every row it measured.
Unset, nothing is stopped.
"""

import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]

# (workload, denoising steps per call, timed runs, kernel profile of ours): the guidance loop is
# 50 UNet steps, whose kernels unet-64 shows.
FULL = [
    ("unet-64", 1, 10, True),
    ("loop-50", 50, 3, False),
    ("vae-decode-64", 0, 5, True),
    ("faceid-pipeline-20", 20, 3, True),
]
# Full-size UNets and VAEs take many minutes on a software Vulkan device: the text encoder alone.
REDUCED = [("text-encode", 0, 2, True)]
# The kernels named in kernels.md for each workload, the longest first.
TOP_KERNELS = 12
# A workload is not started with less time than this left (two processes load full-size models).
MIN_START_S = 40.0


def gpu_used_mib():
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        text = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=10,
        ).stdout
        return float(text.split()[0])
    except (ValueError, IndexError, subprocess.SubprocessError):
        return None


def measure(command, env, timeout):
    """Runs one side; its JSON line, with `gpu_mib` (peak rise of used GPU memory) added, or
    "timeout" if it did not finish within `timeout` seconds, or "failed"."""
    base = gpu_used_mib()
    peak = [base]
    done = threading.Event()

    def sample():
        while not done.wait(0.1):
            used = gpu_used_mib()
            if used is not None and (peak[0] is None or used > peak[0]):
                peak[0] = used

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    try:
        # No deadline (FACEID_GPU_DEADLINE unset): no timeout, which subprocess spells None.
        limit = None if timeout == float("inf") else timeout
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired as stopped:
        sys.stderr.write((stopped.stderr or b"")[-4000:].decode(errors="replace"))
        print(f"{' '.join(map(str, command))}: no result within {timeout:.0f} s", file=sys.stderr, flush=True)
        return "timeout"
    finally:
        done.set()
        sampler.join()
    wall = time.perf_counter() - start
    sys.stderr.write(result.stderr[-4000:])
    if result.returncode != 0:
        print(f"{' '.join(map(str, command))} failed with {result.returncode}", file=sys.stderr, flush=True)
        return "failed"
    line = json.loads(result.stdout.strip().splitlines()[-1])
    line["gpu_mib"] = None if base is None else peak[0] - base
    line["wall_s"] = wall
    return line


def mib(value):
    return "-" if value is None else f"{value:.0f}"


def rate(steps, seconds):
    return f"{steps / seconds:.2f}" if steps else "-"


def row(workload, steps, mine, theirs):
    """One line of the table; a side without a result reads `timeout`, `failed` or `skipped`.
    The workload is followed by the shader compiler ours ran with (`spirv`, `wgsl`)."""
    if isinstance(mine, dict):
        runtime = mine.get("runtime", "")
        compiler = runtime[runtime.rfind("<") + 1:].rstrip(">") if "<" in runtime else "?"
        workload = f"{workload} ({compiler})"
    if isinstance(mine, str) or isinstance(theirs, str):
        cells = []
        for side in (mine, theirs):
            if isinstance(side, str):
                cells.append(f"{side} | -")
            else:
                t = statistics.median(side["times"])
                cells.append(f"{t:.3f} s | {rate(steps, t)}")
        return f"| {workload} | {steps or '-'} | {cells[0]} | {cells[1]} | - | - | - | - |"
    a, b = statistics.median(mine["times"]), statistics.median(theirs["times"])
    return (
        f"| {workload} | {steps or '-'} | {a:.3f} s | {rate(steps, a)} | {b:.3f} s | {rate(steps, b)} "
        f"| {a / b:.2f}x | {mib(mine['gpu_mib'])} | {mib(theirs['gpu_mib'])} | {mib(theirs.get('gpu_peak_mib'))} |"
    )


def kernel_section(workload, mine):
    """The lines of kernels.md for one workload: from the extra run of ours with every kernel
    launch timed on the device (FACEID_BENCH_KERNELS), its launches, the kernels' summed time
    against the median run without the observer (the share of the run the GPU computes; the rest
    it waits for the host), and the kernels that take longest."""
    profile = ((mine.get("kernels") or {}) if isinstance(mine, dict) else {}).get("profile")
    if not profile:
        return []
    run = statistics.median(mine["times"])
    busy = profile["busy_seconds"]
    method = profile["method"] or "no"
    lines = [
        f"### {workload}",
        "",
        f"{profile['launches']} kernel launches, {profile['timed']} timed ({method} timing): "
        f"{busy:.3f} s of kernels on the device against {run:.3f} s per run without the observer "
        f"({100 * busy / run:.0f}%).",
        "",
        "| kernel | launches | time | share of kernel time |",
        "|---|---|---|---|",
    ]

    def share(seconds):
        return f"{100 * seconds / busy:.1f}%" if busy > 0 else "-"

    for kernel in profile["kernels"][:TOP_KERNELS]:
        seconds = kernel["seconds"]
        lines.append(f"| {kernel['name']} | {kernel['launches']} | {1000 * seconds:.2f} ms | {share(seconds)} |")
    rest = profile["kernels"][TOP_KERNELS:]
    if rest:
        seconds = sum(kernel["seconds"] for kernel in rest)
        launches = sum(kernel["launches"] for kernel in rest)
        lines.append(f"| {len(rest)} others | {launches} | {1000 * seconds:.2f} ms | {share(seconds)} |")
    return lines + [""]


def main():
    mode, ours, python, out = sys.argv[1], sys.argv[2], sys.argv[3], pathlib.Path(sys.argv[4])
    out.mkdir(parents=True, exist_ok=True)
    deadline = float(os.environ.get("FACEID_GPU_DEADLINE", "inf"))
    workloads = FULL if mode == "full" else REDUCED
    # The pack's WGSL build of the bench, for a workload the SPIR-V build fails on.
    fallback = pathlib.Path(ours).with_name(pathlib.Path(ours).name + "-wgsl")
    theirs_device, theirs_precision = ("cuda", "f16") if mode == "full" else ("cpu", "f32")
    threads = str(os.cpu_count())
    theirs_name = "diffusers (CUDA, f16)" if mode == "full" else "diffusers (CPU, f32)"
    lines = [
        f"| workload | steps per call | ours (wgpu, f16) median | ours it/s | {theirs_name} median | diffusers it/s "
        "| ours/diffusers time | ours GPU MiB | diffusers GPU MiB | diffusers allocator peak MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    device, torch_version = "?", "?"
    missing = []  # the workloads without a figure on either side
    kernels = ["## Kernels of ours", ""]
    with open(out / "runs.jsonl", "w") as runs_file:
        for workload, steps, runs, profiled in workloads:
            if deadline - time.time() < MIN_START_S:
                mine = theirs = "skipped"
            else:
                print(f"== {workload}: {runs} run(s) each side", file=sys.stderr, flush=True)
                env = dict(os.environ, FACEID_BENCH_DEVICE="wgpu", FACEID_BENCH_PRECISION="f16")
                if profiled:
                    env["FACEID_BENCH_KERNELS"] = "1"
                mine = measure([ours, workload, str(runs)], env, deadline - time.time())
                if mine == "failed" and fallback.exists() and deadline - time.time() >= MIN_START_S:
                    print(f"== {workload}: again with {fallback.name}", file=sys.stderr, flush=True)
                    mine = measure([str(fallback), workload, str(runs)], env, deadline - time.time())
                env = dict(os.environ, FACEID_BENCH_DEVICE=theirs_device, FACEID_BENCH_PRECISION=theirs_precision)
                script = ROOT / "tests" / "bench" / "torch_workload.py"
                left = deadline - time.time()
                theirs = measure([python, str(script), workload, str(runs), threads], env, left) if left > 0 else "timeout"
                for line in (mine, theirs):
                    if isinstance(line, dict):
                        runs_file.write(json.dumps(line) + "\n")
                        runs_file.flush()
                if isinstance(mine, dict):
                    device = f"{mine['device']}, {mine.get('runtime', '?')}"
                torch_version = theirs.get("torch", torch_version) if isinstance(theirs, dict) else torch_version
            if isinstance(mine, str) or isinstance(theirs, str):
                missing.append(workload)
            lines.append(row(workload, steps, mine, theirs))
            kernels += kernel_section(workload, mine)
            (out / "kernels.md").write_text("\n".join(kernels) + "\n")
            print(lines[-1], flush=True)
            (out / "table.md").write_text("\n".join(lines) + "\n")
    lines.append("")
    lines.append(f"ours on {device}; torch {torch_version}; mode {mode}")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[-2:]))
    print("\n" + "\n".join(kernels))
    if missing:
        raise SystemExit(f"no figure for {', '.join(missing)}")


if __name__ == "__main__":
    main()
