#!/usr/bin/env bash
# The GPU run that `cargo xtask gpu-pack` prepares, copied into the pack as run.sh. On a machine
# without Rust or internet, from any folder; it reads nothing but the pack:
#
#   bash gpu-pack/run.sh            an NVIDIA GPU with CUDA PyTorch: the parity tests of
#                                   faceid-pipeline on the GPU (f32 and f16), then the table in
#                                   f16, ours on wgpu and diffusers on CUDA, then the CLI
#   bash gpu-pack/run.sh --reduced  the same steps on any Vulkan device, small enough for Mesa's
#                                   lavapipe: two parity tests, the table for the text encoder
#                                   alone (diffusers' side on the CPU in f32), the CLI on the
#                                   tiny test models
#
# Everything it prints also goes to $OUT (default: out/ beside this script): prepare.log (wheels
# and models), parity.log, table.md, runs.jsonl (one JSON line per side and workload),
# kernels.md (per workload, the GPU kernels one run of ours launches and their device time),
# autotune.log (the kernels burn's autotune picked on this device, with their times) and
# generate.log. The Python side (wheels, full-size random models) is prepared in the background
# while the parity tests run.
# FACEID_PYTHON: the Python with torch (default python3); FACEID_BENCH_MODELS: the full-size
# random models (default: written by tests/bench/gen_models.py into a temporary folder);
# FACEID_GPU_BUDGET: seconds the whole run may take (default: no limit): the parity tests get at
# most a third of it, the table what is left, each step stopped at the limit with what it printed.
set -uo pipefail

pack=$(cd "$(dirname "$0")" && pwd)
mode=full
[[ ${1:-} == --reduced ]] && mode=reduced
out=${OUT:-$pack/out}
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python=${FACEID_PYTHON:-python3}
started=$SECONDS
step() { echo "== [$((SECONDS - started)) s] $*"; }
budget=${FACEID_GPU_BUDGET:-}
deadline=$(($(date +%s) + ${budget:-999999}))
left() { echo $((deadline - $(date +%s))); }

step "mode $mode, $(nproc) CPUs"
[[ -f $pack/commit.txt ]] && echo "built from $(cat "$pack/commit.txt")"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

# The Vulkan loader and the GL dispatch libraries NVIDIA's Vulkan driver links against, when the
# machine has no loader.
if [[ $(ldconfig -p) != *libvulkan.so.1* ]]; then
    step "unpacking the Vulkan loader and GL dispatch libraries"
    for f in "$pack"/gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
fi
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[[ -f $icd ]] && export VK_DRIVER_FILES=$icd

# The payload: bin/ and the repository's files the run reads, at their paths there.
step "unpacking the payload"
root=$work/root
mkdir -p "$root"
if command -v xz >/dev/null; then
    xz -dc "$pack/payload.tar.xz" | tar -x -C "$root"
else
    "$python" -c 'import sys, tarfile; tarfile.open(sys.argv[1], "r:xz").extractall(sys.argv[2])' \
        "$pack/payload.tar.xz" "$root"
fi || exit 1
bin=$root/bin
"$bin/faceid" --version || exit 1
export FACEID_TEST_DATA=$root/tests/data FACEID_BENCH_ROOT=$root

# burn's autotune writes the kernel it picks for each shape, with the top times, to autotune.log:
# every process below starts in $work, where cubecl reads this file.
printf '[autotune.logger]\nlevel = "minimal"\nfile = "%s"\n' "$out/autotune.log" >"$work/cubecl.toml"

# The Python side in the background: the carried wheels where the machine lacks them, then the
# full-size random models.
if ! "$python" -c 'import diffusers, insightface' 2>/dev/null; then
    install_wheels=1
    export PYTHONPATH=$work/site${PYTHONPATH:+:$PYTHONPATH}
fi
models=${FACEID_BENCH_MODELS:-$work/models}
(
    if [[ -n ${install_wheels:-} ]]; then
        step "installing the carried wheels"
        pip=("$python" -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir
            --target "$work/site")
        "${pip[@]}" "$root"/wheels/*.whl || exit 1
        # insightface comes as source (it has no wheel): only the FaceID pipeline's reference
        # side needs it, so the other rows go on without it.
        "${pip[@]}" "$root"/wheels/insightface-*.tar.gz || echo "insightface did not build"
    fi
    if [[ ! -f $models/sd15/model_index.json ]]; then
        step "writing the full-size random models to $models"
        FACEID_GEN_THREADS=$(nproc) timeout "$(left)" "$python" "$root/tests/bench/gen_models.py" \
            "$models" || echo "gen_models.py failed (its checks run last)"
        [[ -f $models/insightface/models/buffalo_l/w600k_r50.onnx ]] || exit 1
    fi
    step "prepared"
) >"$out/prepare.log" 2>&1 &
prepare=$!

step "parity tests (flex and wgpu; f32 and f16)"
if [[ $mode == full ]]; then
    filter=(pipeline_parity:: faceid_parity:: half_precision::)
else
    filter=(half_precision::faceid_unet_in_f16 pipeline_parity::pipeline_matches_diffusers_for_every_case)
fi
limit=$(($(left) / 3))
(cd "$work" && timeout "$limit" "$bin/parity" --test-threads 1 --nocapture "${filter[@]}") 2>&1 | tee "$out/parity.log"
parity=${PIPESTATUS[0]}
[[ $parity == 124 ]] && echo "parity tests: stopped after $limit s"
grep -E '^test result' "$out/parity.log"

step "waiting for the Python side"
wait "$prepare"
prepared=$?
tail -4 "$out/prepare.log"
[[ $prepared == 0 ]] || exit 1

# The CLI end to end on the GPU after the table, in the time left: fal's default of 4 samples from
# the full-size random models; in reduced mode, the tiny models of the CLI's tests.
if [[ $mode == full ]]; then
    face_models=$models/insightface/models/buffalo_l
    generate_args=(--base-model "$models/sd15" --ip-adapter "$models/ip-adapter-faceid_sd15.bin"
        --detector "$face_models/det_10g.onnx" --recognizer "$face_models/w600k_r50.onnx"
        --steps 30 --num-samples 4)
    reserve=45
else
    data=$root/tests/data
    generate_args=(--base-model "$data/sd/tiny-a" --ip-adapter "$data/faceid/ip-adapter-faceid_tiny.bin"
        --recognizer "$data/face/arcface_r50_bn.onnx" --steps 4 --num-samples 2 --width 64 --height 64)
    reserve=0
fi

step "the table"
(cd "$work" && FACEID_BENCH_MODELS=$models FACEID_GPU_DEADLINE=$((deadline - reserve)) \
    "$python" "$root/tests/bench/gpu_table.py" "$mode" "$bin/bench_workload" "$python" "$out")
table=$?

step "faceid generate on wgpu: ${generate_args[*]}"
if (($(left) > 15)); then
    t0=$SECONDS
    (cd "$work" && timeout "$(left)" "$bin/faceid" generate --device wgpu \
        --face "$root/tests/data/faces/astronaut.png" --seed 42 --prompt "a photo of a person" \
        "${generate_args[@]}" --output "$work/generated.png") 2>&1 | tail -5 | tee "$out/generate.log"
    generate=${PIPESTATUS[0]}
    echo "faceid generate: exit $generate in $((SECONDS - t0)) s (loading included)" | tee -a "$out/generate.log"
else
    generate=skipped
    echo "faceid generate: skipped, $(left) s left"
fi

if [[ -f $out/autotune.log ]]; then
    echo "autotune.log: $(grep -c '^Fastest result' "$out/autotune.log") decisions; the kernels picked most:"
    grep -o '^Fastest result [A-Za-z0-9_]*' "$out/autotune.log" | cut -d' ' -f3 | sort | uniq -c | sort -rn | head -12
fi
step "done: parity exit $parity, table exit $table, generate exit $generate"
[[ -f $out/table.md ]] && cat "$out/table.md"
[[ $parity == 0 && $generate == 0 && $table == 0 ]]
