"""One timed workload in PyTorch/diffusers, the same as examples/bench_workload.rs: full-size SD 1.5
architectures from weights/configs/sd15 with their default random initialisation, float32, on the
CPU with the thread count of `torch.set_num_threads` (default 2), printed as one JSON line.

    python tests/bench/torch_workload.py WORKLOAD RUNS
"""

import json
import pathlib
import resource
import sys
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "weights" / "configs" / "sd15"


def main() -> None:
    workload = sys.argv[1] if len(sys.argv) > 1 else "unet-64"
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    with torch.inference_mode():
        if workload in ("unet-64", "unet-96"):
            from diffusers import UNet2DConditionModel

            side = 64 if workload == "unet-64" else 96
            model = UNet2DConditionModel.from_config(
                UNet2DConditionModel.load_config(CONFIGS / "unet")
            ).eval()
            sample = torch.randn(2, 4, side, side)
            context = torch.randn(2, 77, 768)
            work = lambda: model(sample, 981, encoder_hidden_states=context).sample
        elif workload == "vae-decode-64":
            from diffusers import AutoencoderKL

            model = AutoencoderKL.from_config(AutoencoderKL.load_config(CONFIGS / "vae")).eval()
            z = torch.randn(1, 4, 64, 64)
            work = lambda: model.decode(z).sample
        elif workload == "text-encode":
            from transformers import CLIPTextConfig, CLIPTextModel

            model = CLIPTextModel(CLIPTextConfig.from_pretrained(CONFIGS / "text_encoder")).eval()
            ids = torch.full((2, 77), 49406, dtype=torch.long)
            work = lambda: model(ids).last_hidden_state
        else:
            raise SystemExit(f"unknown workload {workload!r}")
        work()  # warm-up
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            work()
            times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"impl": "pytorch", "workload": workload, "times": times,
                      "peak_rss_mib": peak, "torch": torch.__version__, "threads": threads}))


if __name__ == "__main__":
    main()
