"""Full-size models with random (seeded) weights, in the file formats users have, for the
pipeline workloads of `cargo xtask bench` (`tests/bench/torch_workload.py` and
`examples/bench_workload.rs` read them from `$FACEID_BENCH_MODELS`, default `target/bench-models`).

    .venv/bin/python tests/bench/gen_models.py OUT_DIR

With FACEID_GEN_THREADS PyTorch uses that many threads instead of 2 (the GPU run sets the
machine's CPU count: the detector's calibration may then round differently).

Writes under OUT_DIR (4.55 GB, byte-identical from run to run with the pinned stack):

- `sd15/`: a diffusers Stable Diffusion 1.5 folder, float32 safetensors, laid out like
  runwayml/stable-diffusion-v1-5 (no safety checker, no feature extractor):
  - `unet/` (`config.json`, `diffusion_pytorch_model.safetensors`) and `vae/` (same names): the
    configs of `weights/configs/sd15`, diffusers' default initialisation, `save_pretrained`;
  - `text_encoder/` (`config.json`, `model.safetensors`): CLIPTextModel from
    `weights/configs/sd15/text_encoder`, transformers' default initialisation; the tensor names
    carry the `text_model.` prefix, as in the published SD 1.x checkpoints (transformers 5 would
    write them without it);
  - `tokenizer/`: `vocab.json` and `merges.txt` copied from `tests/data/tokenizer/`, plus the
    `tokenizer_config.json` / `special_tokens_map.json` of the SD 1.5 repository;
  - `scheduler/scheduler_config.json`: SD 1.5's PNDMScheduler config (scaled_linear betas
    0.00085..0.012, 1000 steps, steps_offset 1, skip_prk_steps, set_alpha_to_one false); the
    workloads switch to DDIM with `DDIMScheduler.from_config`, as the FaceID model card does;
  - `model_index.json`: a StableDiffusionPipeline index as `save_pretrained` writes it, with
    `safety_checker`, `feature_extractor` and `image_encoder` set to `[null, null]`.
- `ip-adapter-faceid_sd15.bin`: an IP-Adapter FaceID v1 checkpoint for SD 1.5 written with
  `torch.save`, float16 like the published h94/IP-Adapter-FaceID file, with exactly its names
  and shapes: `{"image_proj": {...}, "ip_adapter": {...}}` where
  - `image_proj`: `proj.0.weight` [1024, 512], `proj.0.bias` [1024], `proj.2.weight` [3072, 1024],
    `proj.2.bias` [3072], `norm.weight` [768], `norm.bias` [768] (MLP 512 -> 1024 -> 4 x 768,
    LayerNorm(768));
  - `ip_adapter`: for every attention processor i = 0..31 in diffusers' `unet.attn_processors`
    order (down blocks, up blocks, mid block; attn1 before attn2), `{i}.to_{q,k,v,out}_lora.down.weight`
    [128, in] and `{i}.to_{q,k,v,out}_lora.up.weight` [hidden, 128] (in = 768 for to_k / to_v of
    cross-attention, hidden otherwise), and for the 16 cross-attention processors (odd i)
    `{i}.to_k_ip.weight` / `{i}.to_v_ip.weight` [hidden, 768]; 288 tensors, key order as the
    original `nn.ModuleList(unet.attn_processors.values()).state_dict()`.
  Values: N(0, 0.02) everywhere except LayerNorm weights 1 + N(0, 0.02) and LoRA up N(0, 0.002).
- `insightface/models/buffalo_l/det_10g.onnx`: an SCRFD-10G-style detector with keypoints at the
  real widths (ResNetV1e stem 56, stage blocks (3, 4, 2, 3), planes [56, 88, 88, 224]; PAFPN 56
  channels; shared head of 3 conv-BN-ReLU with 80 channels; 2 anchors; insightface's 9-output
  layout score/bbox/kps x strides 8/16/32, unbatched), input `input.1` [1, 3, height, width]
  dynamic, batch norms folded, opset 11. The score head is calibrated so that insightface finds
  exactly one face in astronaut.png at det_size 640 (its box and keypoints are wherever the random
  weights put them; one face means FaceAnalysis runs the recogniser once, as on a real portrait).
- `insightface/models/buffalo_l/w600k_r50.onnx`: ArcFace IResNet-50 (stages (3, 4, 14, 3),
  widths (64, 128, 256, 512), FC 512*7*7 -> 512, BN1d), input `input.1` [batch, 3, 112, 112]
  with a dynamic batch, output `fc1` [batch, 512], batch norms folded, opset 11.

The SCRFD and IResNet modules, their randomisation and the ONNX export come from
`tests/fixtures/gen_face.py`; the original FaceID processor classes (for the checkpoint layout)
from `tests/fixtures/gen_faceid.py`. Idempotent: a file (or a model folder under `sd15/`) that
exists is kept; each one is written under a temporary name and renamed once complete. The
script then checks that diffusers loads the folder and the adapter and that insightface's
FaceAnalysis loads both ONNX models and finds exactly one face in astronaut.png.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import cv2  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))

import gen_face  # noqa: E402
import gen_faceid  # noqa: E402

CONFIGS = ROOT / "weights" / "configs" / "sd15"
TOKENIZER = ROOT / "tests" / "data" / "tokenizer"
FACE_PHOTO = "astronaut.png"  # in tests/data/faces; the photo the detector is calibrated on

ADAPTER_FILE = "ip-adapter-faceid_sd15.bin"
LORA_RANK = 128
NUM_TOKENS = 4
ID_DIM = 512

# scheduler/scheduler_config.json of runwayml/stable-diffusion-v1-5.
SD15_SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "trained_betas": None,
    "clip_sample": False,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
}

# tokenizer/tokenizer_config.json and special_tokens_map.json of runwayml/stable-diffusion-v1-5.
_SPECIAL = {"lstrip": False, "normalized": True, "rstrip": False, "single_word": False}
SD15_TOKENIZER_CONFIG = {
    "add_prefix_space": False,
    "bos_token": {"__type": "AddedToken", "content": "<|startoftext|>", **_SPECIAL},
    "do_lower_case": True,
    "eos_token": {"__type": "AddedToken", "content": "<|endoftext|>", **_SPECIAL},
    "errors": "replace",
    "model_max_length": 77,
    "name_or_path": "openai/clip-vit-large-patch14",
    "pad_token": "<|endoftext|>",
    "special_tokens_map_file": "./special_tokens_map.json",
    "tokenizer_class": "CLIPTokenizer",
    "unk_token": {"__type": "AddedToken", "content": "<|endoftext|>", **_SPECIAL},
}
SD15_SPECIAL_TOKENS = {
    "bos_token": {"content": "<|startoftext|>", **_SPECIAL},
    "eos_token": {"content": "<|endoftext|>", **_SPECIAL},
    "pad_token": "<|endoftext|>",
    "unk_token": {"content": "<|endoftext|>", **_SPECIAL},
}


def log(message: str) -> None:
    print(f"gen_models: {message}", file=sys.stderr, flush=True)


def write_once(dst: pathlib.Path, write) -> None:
    """Runs write(tmp) unless dst exists, then renames tmp (a file or a folder) to dst."""
    if dst.exists():
        log(f"keep {dst}")
        return
    tmp = dst.with_name(dst.name + ".partial")
    if tmp.is_dir():
        shutil.rmtree(tmp)
    elif tmp.exists():
        tmp.unlink()
    dst.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    write(tmp)
    os.replace(tmp, dst)
    log(f"wrote {dst} in {time.perf_counter() - start:.1f} s")


# --------------------------------------------------------------------------------------------
# Stable Diffusion 1.5 folder
# --------------------------------------------------------------------------------------------


def save_unet(dst: pathlib.Path) -> None:
    from diffusers import UNet2DConditionModel

    torch.manual_seed(1501)
    model = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(CONFIGS / "unet"))
    model.save_pretrained(str(dst), safe_serialization=True)


def save_vae(dst: pathlib.Path) -> None:
    from diffusers import AutoencoderKL

    torch.manual_seed(1502)
    model = AutoencoderKL.from_config(AutoencoderKL.load_config(CONFIGS / "vae"))
    model.save_pretrained(str(dst), safe_serialization=True)


def save_text_encoder(dst: pathlib.Path) -> None:
    from safetensors.torch import load_file, save_file
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(1503)
    model = CLIPTextModel(CLIPTextConfig.from_pretrained(CONFIGS / "text_encoder"))
    model.save_pretrained(str(dst), safe_serialization=True)
    # The published SD 1.x text encoders (written by transformers 4) name their tensors
    # `text_model.*`; transformers 5 writes them without the prefix and loads either.
    path = dst / "model.safetensors"
    tensors = load_file(str(path))
    named = {k if k.startswith("text_model.") else f"text_model.{k}": v for k, v in tensors.items()}
    save_file(named, str(path), metadata={"format": "pt"})


def save_tokenizer(dst: pathlib.Path) -> None:
    dst.mkdir()
    for name in ("vocab.json", "merges.txt"):
        shutil.copyfile(TOKENIZER / name, dst / name)
    (dst / "tokenizer_config.json").write_text(json.dumps(SD15_TOKENIZER_CONFIG, indent=2) + "\n")
    (dst / "special_tokens_map.json").write_text(json.dumps(SD15_SPECIAL_TOKENS, indent=2) + "\n")


def save_scheduler(dst: pathlib.Path) -> None:
    from diffusers import PNDMScheduler

    PNDMScheduler.from_config(SD15_SCHEDULER).save_pretrained(str(dst))


def save_model_index(dst: pathlib.Path) -> None:
    import diffusers

    index = {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": diffusers.__version__,
        "feature_extractor": [None, None],
        "image_encoder": [None, None],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", "PNDMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    dst.write_text(json.dumps(index, indent=2) + "\n")


def write_sd15(out: pathlib.Path) -> None:
    sd = out / "sd15"
    write_once(sd / "unet", save_unet)
    write_once(sd / "vae", save_vae)
    write_once(sd / "text_encoder", save_text_encoder)
    write_once(sd / "tokenizer", save_tokenizer)
    write_once(sd / "scheduler", save_scheduler)
    write_once(sd / "model_index.json", save_model_index)  # last: marks a complete folder


# --------------------------------------------------------------------------------------------
# IP-Adapter FaceID checkpoint
# --------------------------------------------------------------------------------------------


def adapter_value(name: str, shape: torch.Size, g: torch.Generator) -> torch.Tensor:
    n = torch.randn(shape, generator=g)
    if name == "norm.weight":
        return 1.0 + 0.02 * n
    if name.endswith("_lora.up.weight"):
        return 0.002 * n
    return 0.02 * n


def save_adapter(dst: pathlib.Path) -> None:
    from diffusers import UNet2DConditionModel

    # The UNet only provides the processor names and sizes: no weights needed.
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(CONFIGS / "unet"))
    procs = gen_faceid.original_processors(unet, rank=LORA_RANK)
    assert len(procs) == 32, len(procs)
    proj = gen_faceid.MLPProjModel(unet.config.cross_attention_dim, ID_DIM, NUM_TOKENS)
    g = torch.Generator("cpu").manual_seed(1504)
    ckpt = {
        "image_proj": {k: adapter_value(k, v.shape, g).half() for k, v in proj.state_dict().items()},
        "ip_adapter": {
            k: adapter_value(k, v.shape, g).half() for k, v in nn.ModuleList(procs.values()).state_dict().items()
        },
    }
    assert len(ckpt["ip_adapter"]) == 32 * 8 + 16 * 2, len(ckpt["ip_adapter"])
    torch.save(ckpt, str(dst))


# --------------------------------------------------------------------------------------------
# insightface buffalo_l
# --------------------------------------------------------------------------------------------


class SCRFD10GFull(gen_face.SCRFD10G):
    """gen_face.py's SCRFD-10G re-implementation at the widths of scrfd_10g_bnkps, its convolutions
    initialised He-normal (ReLU gain) so that the features, hence the scores, depend on the image
    at this depth (PyTorch's default initialisation shrinks them until the borders' zero padding
    decides the scores)."""

    def __init__(self):
        nn.Module.__init__(self)
        self.batched = False  # det_10g.onnx's outputs have no batch axis
        planes = [56, 88, 88, 224]
        self.backbone = gen_face.ResNetV1e(56, planes)
        self.neck = gen_face.PAFPN(planes[1:], 56, "size")
        self.head = gen_face.SCRFDHead(56, 80)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")


def calibrate_one_face(model: SCRFD10GFull, img) -> tuple[float, float]:
    """Rescales the output convolutions on img at det_size 640: box distances (before the stride
    and the per-stride scale) ~ 1.5 +- 0.5, keypoint offsets ~ N(0, 1); scores such that exactly
    one anchor passes insightface's 0.5, 2 logits above the threshold, the next anchor 2 below:
    one face, as on a real portrait, so FaceAnalysis runs the recogniser once. Returns the gap
    between the two best logits in units of the logits' standard deviation, and the logits' scale."""
    canvas, _ = gen_face.letterbox(img, 640)
    blob = torch.from_numpy(cv2.dnn.blobFromImage(canvas, 1.0 / 128, (640, 640), (127.5,) * 3, swapRB=True))
    head = model.head
    head.cls.bias.data.zero_()  # scores are then linear in the cls weights
    raw = {"cls": [], "reg": [], "kps": []}
    hooks = [getattr(head, k).register_forward_hook(lambda m, i, o, k=k: raw[k].append(o.flatten())) for k in raw]
    with torch.no_grad():
        model(blob)
    for h in hooks:
        h.remove()
    out = {k: torch.cat(v).double() for k, v in raw.items()}
    head.reg.weight.data *= 0.5 / float(out["reg"].std())
    head.reg.bias.data.fill_(1.5)
    head.kps.weight.data *= 1.0 / float(out["kps"].std())
    head.kps.bias.data.zero_()
    top = (out["cls"] / out["cls"].std()).topk(2).values
    gap = float(top[0] - top[1])
    scale = 4.0 / gap
    head.cls.weight.data *= scale / float(out["cls"].std())
    head.cls.bias.data.fill_(-scale * float(top[0] + top[1]) / 2)
    return gap, scale


def save_detector(dst: pathlib.Path) -> None:
    model = gen_face.randomize(SCRFD10GFull, seed=1505)
    gap, factor = calibrate_one_face(model, gen_face.read_bgr(FACE_PHOTO))
    log(f"detector: one anchor above 0.5 on {FACE_PHOTO} (best two logits {gap:.2f} std apart, std -> {factor:.2f})")
    names = [f"{kind}_{s}" for kind in ("score", "bbox", "kps") for s in (8, 16, 32)]
    axes = {"input.1": {2: "height", 3: "width"}}
    gen_face.export(model, dst, torch.zeros(1, 3, 640, 640), ["input.1"], names, 11, True, axes)


def save_recognizer(dst: pathlib.Path) -> None:
    model = gen_face.randomize(lambda: gen_face.IResNet((3, 4, 14, 3), (64, 128, 256, 512)), seed=1506)
    model.features.weight.data.fill_(1.0)
    axes = {"input.1": {0: "batch"}, "fc1": {0: "batch"}}
    gen_face.export(model, dst, torch.zeros(1, 3, 112, 112), ["input.1"], ["fc1"], 11, True, axes)


def write_insightface(out: pathlib.Path) -> None:
    pack = out / "insightface" / "models" / "buffalo_l"
    # ONNX export wants a name ending in .onnx; write_once renames the .partial file afterwards.
    write_once(pack / "det_10g.onnx", lambda tmp: save_onnx(tmp, save_detector))
    write_once(pack / "w600k_r50.onnx", lambda tmp: save_onnx(tmp, save_recognizer))


def save_onnx(tmp: pathlib.Path, save) -> None:
    staging = tmp.with_name(tmp.name + ".onnx")
    save(staging)
    os.replace(staging, tmp)


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------


@torch.inference_mode()
def check(out: pathlib.Path) -> None:
    import contextlib

    import numpy as np
    from diffusers import StableDiffusionPipeline
    from insightface.app import FaceAnalysis
    from safetensors import safe_open

    pipe = StableDiffusionPipeline.from_pretrained(str(out / "sd15"), safety_checker=None)
    # The prefixed text-encoder names must have been loaded, not re-initialised.
    loaded = {k.removeprefix("text_model."): v for k, v in pipe.text_encoder.state_dict().items()}
    with safe_open(str(out / "sd15" / "text_encoder" / "model.safetensors"), "pt") as f:
        for name in ("embeddings.token_embedding.weight", "encoder.layers.11.mlp.fc2.weight"):
            assert torch.equal(f.get_tensor(f"text_model.{name}"), loaded[name]), name
    ids = pipe.tokenizer("a photo", padding="max_length", max_length=77).input_ids
    assert ids[:4] == [49406, 320, 1125, 49407] and ids[-1] == 49407 and len(ids) == 77, ids
    pipe.load_ip_adapter(str(out), subfolder=None, weight_name=ADAPTER_FILE, image_encoder_folder=None)
    ip = [p for p in pipe.unet.attn_processors.values() if hasattr(p, "to_k_ip")]
    assert len(ip) == 16 and pipe.unet.config.encoder_hid_dim_type == "ip_image_proj"
    log(f"diffusers loads sd15/ and {ADAPTER_FILE} ({type(pipe.scheduler).__name__})")
    del pipe

    with contextlib.redirect_stdout(sys.stderr):  # insightface prints what it loads
        app = FaceAnalysis(
            name="buffalo_l",
            root=str(out / "insightface"),
            allowed_modules=["detection", "recognition"],
            providers=["CPUExecutionProvider"],
        )
        app.prepare(ctx_id=0, det_size=(640, 640))
    assert set(app.models) == {"detection", "recognition"}, list(app.models)
    faces = app.get(gen_face.read_bgr(FACE_PHOTO))
    assert len(faces) == 1, f"{len(faces)} faces found, expected one"
    emb = faces[0].normed_embedding
    assert emb.shape == (512,) and np.isfinite(emb).all()
    log(f"insightface: {len(faces)} face(s) in {FACE_PHOTO}, first box {faces[0].bbox.round(1).tolist()}, "
        f"score {faces[0].det_score:.3f}")


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit("usage: gen_models.py OUT_DIR")
    out = pathlib.Path(sys.argv[1]).resolve()
    torch.set_num_threads(int(os.environ.get("FACEID_GEN_THREADS", min(2, os.cpu_count() or 1))))
    start = time.perf_counter()
    write_sd15(out)
    write_once(out / ADAPTER_FILE, save_adapter)
    write_insightface(out)
    log(f"generated in {time.perf_counter() - start:.1f} s")
    check(out)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    log(f"{out}: {size / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
