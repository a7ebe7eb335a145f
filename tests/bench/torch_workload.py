"""One timed workload in PyTorch/diffusers, the same as examples/bench_workload.rs, by default in
float32 on the CPU with the thread count of `torch.set_num_threads` (default 2), printed as one JSON
line `{"impl", "workload", "device", "precision", "times", "peak_rss_mib", "gpu_peak_mib", "torch",
"threads"}` (the last line of stdout; library chatter goes to stderr). As on the Rust side,
FACEID_BENCH_DEVICE (`cpu`, `cuda`) and FACEID_BENCH_PRECISION (`f32`, `f16`) choose where and how
it runs: every module, pipeline and input goes there (attention is PyTorch's SDPA, diffusers'
default), each timing ends with `torch.cuda.synchronize()`, and `gpu_peak_mib` is
`torch.cuda.max_memory_allocated()`. With FACEID_BENCH_FLOPS=1 it prints instead
`{"workload", "flops"}`: the floating-point operations of one timed call as PyTorch's
`FlopCounterMode` counts them (matrix products, convolutions, attention).

    python tests/bench/torch_workload.py WORKLOAD [RUNS [THREADS]]

Each workload is built (and its models loaded), run once untimed (warm-up), then run RUNS times
(default 3), each run timed alone. `peak_rss_mib` is the process's ru_maxrss: the whole process,
building and loading included. Workloads:

- `unet-64`, `unet-96`: one forward pass of the full-size SD 1.5 UNet (weights/configs/sd15/unet,
  diffusers' default random initialisation): sample [2, 4, S, S] with S = 64 / 96 (a guidance pair
  at 512 / 768 px), timestep 981, text context [2, 77, 768].
- `unet-64-ip`, `unet-96-ip`: the same UNet pass with IP-Adapter FaceID's image branch wired the
  way diffusers' `load_ip_adapter` wires it: every cross-attention processor (attn2, 16 of them)
  is an `IPAdapterAttnProcessor2_0` (num_tokens 4, scale 1.0, to_k_ip / to_v_ip [hidden, 768]
  without bias, PyTorch's default random initialisation), every self-attention processor a plain
  `AttnProcessor2_0`; `unet.encoder_hid_proj` = MultiIPAdapterImageProjection([
  IPAdapterFaceIDImageProjection(512 -> 1024 -> GELU -> 4 x 768, LayerNorm(768))]),
  encoder_hid_dim_type "ip_image_proj". Inputs as for unet-64 / unet-96 plus
  `added_cond_kwargs={"image_embeds": [id]}` with id [2, 1, 512] random (batch, one ID image,
  512-d): inside the timed call the projection makes the 4 image tokens per sample
  ([2, 1, 4, 768]) and each attn2 adds scale * Attn(q, to_k_ip(tokens), to_v_ip(tokens)) to the
  text attention. No LoRA (the Rust side fuses it into the weights: no extra cost). The warm-up
  asserts that all 16 image branches ran.
- `loop-20` (or `loop-N`, N steps, e.g. `loop-50`): the classifier-free-guidance denoising loop at 512 x 512 (64 x 64 latents):
  `StableDiffusionPipeline` loaded from `$FACEID_BENCH_MODELS/sd15` (written by
  tests/bench/gen_models.py; default target/bench-models), `DDIMScheduler.from_config` of its
  scheduler config (leading spacing, steps_offset 1: timesteps 951, 901, ..., 1; eta 0),
  `prompt_embeds` / `negative_prompt_embeds` random [1, 77, 768], guidance 7.5,
  20 steps, latents drawn from a CPU generator seeded 0, `output_type="latent"`: 20 UNet passes on
  batch 2 plus the guidance combination and the DDIM updates; no text encoder, no VAE. One time
  per loop. The warm-up runs the same call with 1 step instead of 20.
- `faceid-pipeline` (or `faceid-pipeline-N`: N steps instead of 2, after a 1-step warm-up): IP-Adapter FaceID v1 end to end at 512 x 512, as the diffusers FaceID docs
  run it. Loading (untimed): the pipeline from `$FACEID_BENCH_MODELS/sd15` (safety_checker=None),
  DDIM as above, `load_ip_adapter($FACEID_BENCH_MODELS, subfolder=None,
  weight_name="ip-adapter-faceid_sd15.bin", image_encoder_folder=None)` (the rank-128 LoRA goes
  in through PEFT, unfused, IP scale 1.0), insightface `FaceAnalysis(name="buffalo_l",
  root=$FACEID_BENCH_MODELS/insightface, allowed_modules=["detection", "recognition"])` on the CPU
  with onnxruntime limited to THREADS intra-op threads, `prepare(ctx_id=0, det_size=(640, 640))`.
  Timed, per run: `cv2.imread` of tests/data/faces/astronaut.png (512 x 512, BGR), `app.get`
  (SCRFD detection at 640 -> exactly one face with these models -> norm_crop 112 -> ArcFace),
  `faces[0].normed_embedding` as id [1, 1, 1, 512], `ip_adapter_image_embeds=[cat(zeros, id)]`
  ([2, 1, 1, 512], the zero embedding is the unconditional half), prompt
  "a photo of a person, best quality, high quality", negative prompt
  "monochrome, lowres, bad anatomy, worst quality, low quality" (tokenizer + text encoder, both
  halves), 2 DDIM steps (timesteps 501, 1) with guidance 7.5, CPU generator seeded 42, VAE decode
  and conversion to a PIL image.
- `vae-decode-64`: the full-size VAE decoder on a latent [1, 4, 64, 64] (a 512 x 512 image).
- `text-encode`: the full-size CLIP text encoder on token ids [2, 77] (all 49406).
- `sdxl-unet-128`: one forward pass of the full-size SDXL UNet (weights/configs/sdxl/unet,
  diffusers' default random initialisation): sample [2, 4, 128, 128] (a guidance pair at
  1024 px), timestep 981, text context [2, 77, 2048], `added_cond_kwargs` text_embeds [2, 1280]
  and time_ids [2, 6] = (1024, 1024, 0, 0, 1024, 1024).
- `sdxl-text-encode`: SDXL's prompt encoding on ids [2, 77] (all 49406) as diffusers'
  `StableDiffusionXLPipeline.encode_prompt` runs it: `CLIPTextModel` (weights/configs/sd15/
  text_encoder) and `CLIPTextModelWithProjection` (weights/configs/sdxl/text_encoder_2), each
  with `output_hidden_states=True`, reading `hidden_states[-2]` of both and the second's
  `text_embeds`.
- `clip-vision`: the FaceID Plus image encoder, CLIP ViT-H/14 (`CLIPVisionModelWithProjection`
  of weights/configs/image_encoder, transformers' default random initialisation), on pixel values
  [2, 3, 224, 224], to `hidden_states[-2]` as the reference reads it
  (`image_encoder(pixels, output_hidden_states=True).hidden_states[-2]`, which runs every layer).
"""

import contextlib
import json
import os
import pathlib
import resource
import sys
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "weights" / "configs" / "sd15"
MODELS = pathlib.Path(os.environ.get("FACEID_BENCH_MODELS", ROOT / "target" / "bench-models"))
FACE_PHOTO = ROOT / "tests" / "data" / "faces" / "astronaut.png"
ADAPTER_FILE = "ip-adapter-faceid_sd15.bin"
DEVICE = {"cpu": "cpu", "flex": "cpu", "cuda": "cuda"}[os.environ.get("FACEID_BENCH_DEVICE", "cpu")]
DTYPE = {"f32": torch.float32, "f16": torch.float16}[os.environ.get("FACEID_BENCH_PRECISION", "f32")]
PROMPT = "a photo of a person, best quality, high quality"
NEGATIVE_PROMPT = "monochrome, lowres, bad anatomy, worst quality, low quality"


def place(x):
    """A module, pipeline or float tensor moved to the benchmark's device and precision."""
    return x.to(DEVICE, DTYPE)


def randn(*shape):
    """`torch.randn` drawn on the CPU (the same numbers on every device), then placed."""
    return place(torch.randn(*shape))


def sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def steps_of(workload, prefix, default):
    """N of `PREFIX-N`, or `default` for `PREFIX` alone; None if it is another workload."""
    if workload == prefix:
        return default
    head, _, tail = workload.rpartition("-")
    return int(tail) if head == prefix and tail.isdigit() and int(tail) > 0 else None


def sd15_unet():
    from diffusers import UNet2DConditionModel

    return place(UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(CONFIGS / "unet")).eval())


def install_faceid_image_branch(unet):
    """What `load_ip_adapter` does to the UNet for a FaceID v1 checkpoint, minus the LoRA, with
    random weights. Returns the to_k_ip modules, one per cross-attention layer."""
    from diffusers.models.attention_processor import AttnProcessor2_0, IPAdapterAttnProcessor2_0
    from diffusers.models.embeddings import IPAdapterFaceIDImageProjection, MultiIPAdapterImageProjection

    cad = unet.config.cross_attention_dim
    processors = {}
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            processors[name] = AttnProcessor2_0()
        else:
            hidden = unet.get_submodule(name[: -len(".processor")]).to_q.out_features
            processors[name] = IPAdapterAttnProcessor2_0(hidden, cross_attention_dim=cad, num_tokens=(4,), scale=1.0)
    image_branches = [p.to_k_ip[0] for p in processors.values() if isinstance(p, IPAdapterAttnProcessor2_0)]
    unet.set_attn_processor(processors)  # (empties the dict)
    unet.encoder_hid_proj = MultiIPAdapterImageProjection(
        [IPAdapterFaceIDImageProjection(image_embed_dim=512, cross_attention_dim=cad, mult=2, num_tokens=4)]
    )
    unet.config.encoder_hid_dim_type = "ip_image_proj"  # as diffusers' loader sets it
    place(unet.eval())
    return image_branches


def sd15_pipeline():
    """The SD 1.5 folder written by gen_models.py, with DDIM instead of its PNDM scheduler."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(MODELS / "sd15"), safety_checker=None)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return place(pipe)


def face_analysis(threads):
    """insightface's FaceAnalysis on buffalo_l, detection and recognition only, on the CPU.
    FaceAnalysis has no option for onnxruntime's thread count: its session class gets
    SessionOptions with `threads` intra-op threads while the models load."""
    import onnxruntime as ort
    from insightface.app import FaceAnalysis
    from insightface.model_zoo import model_zoo

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session_init = model_zoo.PickableInferenceSession.__init__

    def init(self, model_path, **kwargs):
        session_init(self, model_path, sess_options=options, **kwargs)

    model_zoo.PickableInferenceSession.__init__ = init
    try:
        app = FaceAnalysis(
            name="buffalo_l",
            root=str(MODELS / "insightface"),
            allowed_modules=["detection", "recognition"],
            providers=["CPUExecutionProvider"],
        )
    finally:
        model_zoo.PickableInferenceSession.__init__ = session_init
    app.prepare(ctx_id=0, det_size=(640, 640))
    return app


def main() -> None:
    workload = sys.argv[1] if len(sys.argv) > 1 else "unet-64"
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    # diffusers / insightface print progress and model lists: keep stdout for the JSON line.
    with torch.inference_mode(), contextlib.redirect_stdout(sys.stderr):
        warmup = None  # the warm-up call, when it is not `work` itself
        check = None  # called with the warm-up's result
        if workload in ("unet-64", "unet-96"):
            side = 64 if workload == "unet-64" else 96
            model = sd15_unet()
            sample = randn(2, 4, side, side)
            context = randn(2, 77, 768)
            work = lambda: model(sample, 981, encoder_hidden_states=context).sample
        elif workload in ("unet-64-ip", "unet-96-ip"):
            side = 64 if workload == "unet-64-ip" else 96
            model = sd15_unet()
            to_k_ip = install_faceid_image_branch(model)
            sample = randn(2, 4, side, side)
            context = randn(2, 77, 768)
            id_embeds = randn(2, 1, 512)
            cond = {"image_embeds": [id_embeds]}
            work = lambda: model(sample, 981, encoder_hidden_states=context, added_cond_kwargs=cond).sample
            # Proof that the image branch runs: each to_k_ip sees the 4 tokens of both samples.
            seen = []
            hooks = [m.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape))) for m in to_k_ip]

            def check(_):
                assert len(to_k_ip) == 16 and seen == [(2, 1, 4, 768)] * 16, seen
                for h in hooks:
                    h.remove()

        elif steps_of(workload, "loop", None) is not None:
            from diffusers import DDIMScheduler

            pipe = sd15_pipeline()
            embeds = randn(1, 77, 768)
            negative = randn(1, 77, 768)

            def loop(steps):
                return pipe(
                    prompt_embeds=embeds,
                    negative_prompt_embeds=negative,
                    guidance_scale=7.5,
                    num_inference_steps=steps,
                    height=512,
                    width=512,
                    generator=torch.Generator("cpu").manual_seed(0),
                    output_type="latent",
                ).images

            work = lambda: loop(steps_of(workload, "loop", None))
            warmup = lambda: loop(1)

            def check(latents):
                assert tuple(latents.shape) == (1, 4, 64, 64), latents.shape
                assert isinstance(pipe.scheduler, DDIMScheduler) and len(pipe.scheduler.timesteps) == 1

        elif (steps := steps_of(workload, "faceid-pipeline", 2)) is not None:
            import cv2

            pipe = sd15_pipeline()
            pipe.load_ip_adapter(str(MODELS), subfolder=None, weight_name=ADAPTER_FILE, image_encoder_folder=None)
            app = face_analysis(threads)

            def run(steps_now):
                img = cv2.imread(str(FACE_PHOTO))  # BGR, as insightface expects
                faces = app.get(img)
                if not faces:
                    raise SystemExit(f"no face found in {FACE_PHOTO}")
                ref = place(torch.from_numpy(faces[0].normed_embedding).reshape(1, 1, 1, 512))
                id_embeds = torch.cat([torch.zeros_like(ref), ref])
                return pipe(
                    prompt=PROMPT,
                    negative_prompt=NEGATIVE_PROMPT,
                    ip_adapter_image_embeds=[id_embeds],
                    num_inference_steps=steps_now,
                    guidance_scale=7.5,
                    height=512,
                    width=512,
                    generator=torch.Generator("cpu").manual_seed(42),
                ).images[0]

            work = lambda: run(steps)
            if steps > 2:
                warmup = lambda: run(1)  # as on the Rust side

            def check(image):
                assert image.size == (512, 512), image.size
                warm_steps = 1 if steps > 2 else steps
                assert len(pipe.scheduler.timesteps) == warm_steps, pipe.scheduler.timesteps
                assert steps != 2 or pipe.scheduler.timesteps.tolist() == [501, 1], pipe.scheduler.timesteps
                assert pipe.unet.config.encoder_hid_dim_type == "ip_image_proj"
                assert len(app.get(cv2.imread(str(FACE_PHOTO)))) == 1

        elif workload == "vae-decode-64":
            from diffusers import AutoencoderKL

            model = place(AutoencoderKL.from_config(AutoencoderKL.load_config(CONFIGS / "vae")).eval())
            z = randn(1, 4, 64, 64)
            work = lambda: model.decode(z).sample
        elif workload == "text-encode":
            from transformers import CLIPTextConfig, CLIPTextModel

            model = place(CLIPTextModel(CLIPTextConfig.from_pretrained(CONFIGS / "text_encoder")).eval())
            ids = torch.full((2, 77), 49406, dtype=torch.long, device=DEVICE)
            work = lambda: model(ids).last_hidden_state
        elif workload == "sdxl-unet-128":
            from diffusers import UNet2DConditionModel

            sdxl = ROOT / "weights" / "configs" / "sdxl"
            model = place(UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(sdxl / "unet")).eval())
            sample = randn(2, 4, 128, 128)
            context = randn(2, 77, 2048)
            cond = {
                "text_embeds": randn(2, 1280),
                "time_ids": place(torch.tensor([[1024.0, 1024.0, 0.0, 0.0, 1024.0, 1024.0]] * 2)),
            }
            work = lambda: model(sample, 981, encoder_hidden_states=context, added_cond_kwargs=cond).sample
        elif workload == "sdxl-text-encode":
            from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

            sdxl = ROOT / "weights" / "configs" / "sdxl"
            first = place(CLIPTextModel(CLIPTextConfig.from_pretrained(CONFIGS / "text_encoder")).eval())
            second = place(CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(sdxl / "text_encoder_2")).eval())
            ids = torch.full((2, 77), 49406, dtype=torch.long, device=DEVICE)

            def work():
                h1 = first(ids, output_hidden_states=True).hidden_states[-2]
                out = second(ids, output_hidden_states=True)
                return h1, out.hidden_states[-2], out.text_embeds
        elif workload == "clip-vision":
            from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

            config = CLIPVisionConfig.from_pretrained(ROOT / "weights" / "configs" / "image_encoder")
            model = place(CLIPVisionModelWithProjection(config).eval())
            pixels = randn(2, 3, 224, 224)
            work = lambda: model(pixels, output_hidden_states=True).hidden_states[-2]

            def check(hidden):
                assert hidden.shape == (2, 257, 1280), hidden.shape
        else:
            raise SystemExit(f"unknown workload {workload!r}")
        if os.environ.get("FACEID_BENCH_FLOPS") == "1":
            # The floating-point operations of one timed call, as PyTorch counts them (matrix
            # products, convolutions and attention; 2 per multiply-add), instead of timings.
            from torch.utils.flop_counter import FlopCounterMode

            with FlopCounterMode(display=False) as counter:
                work()
            print(json.dumps({"workload": workload, "flops": counter.get_total_flops()}), file=sys.__stdout__)
            return
        result = (warmup or work)()
        sync()
        if check is not None:
            check(result)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            work()
            sync()
            times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    gpu_peak = torch.cuda.max_memory_allocated() / 2**20 if DEVICE == "cuda" else None
    print(json.dumps({"impl": "pytorch", "workload": workload, "device": DEVICE,
                      "precision": {torch.float32: "f32", torch.float16: "f16"}[DTYPE], "times": times,
                      "peak_rss_mib": peak, "gpu_peak_mib": gpu_peak, "torch": torch.__version__,
                      "threads": threads}))


if __name__ == "__main__":
    main()
