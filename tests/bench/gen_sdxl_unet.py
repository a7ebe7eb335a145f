"""Writes a full-size SDXL UNet with random weights as diffusers saves it (`config.json` +
`diffusion_pytorch_model.safetensors`, float32, about 10.3 GB) for the full-size loading test:

    python tests/bench/gen_sdxl_unet.py OUT_DIR     # then FACEID_SDXL_UNET=OUT_DIR

The architecture is weights/configs/sdxl/unet/config.json; the weights are diffusers' default
initialisation (seed 0). Idempotent: an existing complete folder is left alone.
"""

import pathlib
import sys
import time

import torch
from diffusers import UNet2DConditionModel

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIG = ROOT / "weights" / "configs" / "sdxl" / "unet"


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit("usage: gen_sdxl_unet.py OUT_DIR")
    out = pathlib.Path(sys.argv[1]).resolve()
    if (out / "diffusion_pytorch_model.safetensors").is_file() and (out / "config.json").is_file():
        print(f"{out}: already there", file=sys.stderr)
        return
    torch.manual_seed(0)
    start = time.perf_counter()
    unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(CONFIG))
    unet.save_pretrained(out, safe_serialization=True, max_shard_size="100GB")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{out}: {size / 2**30:.2f} GiB in {time.perf_counter() - start:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
