"""One timed workload in OpenVINO, the third side of `cargo xtask bench`: the same random-weight
diffusers / transformers modules as tests/bench/torch_workload.py (its builders, its seed),
converted with `openvino.convert_model`, run on the CPU in float32 with THREADS inference threads
and the latency hint. Printed as one JSON line `{"impl", "workload", "times", "peak_rss_mib",
"openvino", "threads"}` (the last line of stdout).

    python tests/bench/openvino_workload.py WORKLOAD [RUNS [THREADS]]

Workloads: `unet-64` (one forward pass of the SD 1.5 UNet on [2, 4, 64, 64], timestep 981,
context [2, 77, 768]), `vae-decode-64` (the VAE decoder on [1, 4, 64, 64]) and `text-encode`
(the CLIP text encoder on ids [2, 77]).

The conversion runs once per workload in a child process and is saved as OpenVINO IR (weights
kept in f32, not compressed to f16) under `$FACEID_BENCH_MODELS/openvino/`; the timed process
reads the IR, compiles it and runs it: a deployment's footprint, without PyTorch's model in the
same process. Precision is pinned to f32 (`INFERENCE_PRECISION_HINT`): on CPUs with bf16 units
OpenVINO would otherwise compute in bf16. One warm-up call, then RUNS timed calls, each alone.
"""

import json
import os
import pathlib
import resource
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODELS = pathlib.Path(os.environ.get("FACEID_BENCH_MODELS", ROOT / "target" / "bench-models"))
WORKLOADS = ("unet-64", "vae-decode-64", "text-encode")


def inputs(workload):
    """The example inputs, seeded as torch_workload.py seeds them."""
    import torch

    torch.manual_seed(0)
    if workload == "unet-64":
        return (torch.randn(2, 4, 64, 64), torch.randn(2, 77, 768))
    if workload == "vae-decode-64":
        return (torch.randn(1, 4, 64, 64),)
    return (torch.full((2, 77), 49406, dtype=torch.long),)


def convert(workload, path):
    """Builds the module as torch_workload.py does and saves it as IR at `path`."""
    import openvino
    import torch

    sys.path.insert(0, str(ROOT / "tests" / "bench"))
    from torch_workload import CONFIGS, sd15_unet

    torch.manual_seed(0)
    if workload == "unet-64":
        class Step(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.unet = sd15_unet()

            def forward(self, sample, context):
                return self.unet(sample, 981, encoder_hidden_states=context).sample

        module = Step()
    elif workload == "vae-decode-64":
        from diffusers import AutoencoderKL

        class Decode(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.vae = AutoencoderKL.from_config(AutoencoderKL.load_config(CONFIGS / "vae"))

            def forward(self, z):
                return self.vae.decode(z).sample

        module = Decode()
    else:
        from transformers import CLIPTextConfig, CLIPTextModel

        class Encode(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.text = CLIPTextModel(CLIPTextConfig.from_pretrained(CONFIGS / "text_encoder"))

            def forward(self, ids):
                return self.text(ids).last_hidden_state

        module = Encode()
    module.eval().requires_grad_(False)
    with torch.no_grad():
        model = openvino.convert_model(module, example_input=inputs(workload))
    path.parent.mkdir(parents=True, exist_ok=True)
    openvino.save_model(model, str(path), compress_to_fp16=False)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--convert":
        convert(sys.argv[2], pathlib.Path(sys.argv[3]))
        return
    workload = sys.argv[1] if len(sys.argv) > 1 else "unet-64"
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    if workload not in WORKLOADS:
        raise SystemExit(f"unknown workload {workload!r}: OpenVINO runs {', '.join(WORKLOADS)}")
    ir = MODELS / "openvino" / f"{workload}.xml"
    if not ir.exists():
        print(f"converting {workload} to {ir}", file=sys.stderr)
        subprocess.run([sys.executable, __file__, "--convert", workload, str(ir)], check=True,
                       stdout=sys.stderr)
    import numpy as np
    import openvino

    core = openvino.Core()
    compiled = core.compile_model(
        core.read_model(str(ir)),
        "CPU",
        {
            "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "f32",
        },
    )
    feed = [t.numpy() for t in inputs(workload)]
    request = compiled.create_infer_request()
    first = request.infer(feed)
    out = next(iter(first.values()))
    assert np.isfinite(out).all() and out.dtype == np.float32, out.dtype
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        request.infer(feed)
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"impl": "openvino", "workload": workload, "times": times,
                      "peak_rss_mib": peak, "openvino": openvino.__version__, "threads": threads}))


if __name__ == "__main__":
    main()
