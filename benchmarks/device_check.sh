#!/usr/bin/env bash
# The GPU check of issue 12 ("the same code must not get slower on a GPU"), prepared as one
# short run for a lent device machine (see /work/.library/device/README.md): the same
# benchmarks that measured the CPU ratios, run on the device, so each ratio is measured
# side by side on that device in one run:
#   1. the privacy audit (benchmarks/privacy_audit.py): the vectorised ensemble against one
#      model at a time, in retrains on the device, for a LoopPlan method (scrub), a
#      train_many method (finetune) and NPO;
#   2. the LM loop (benchmarks/lm_loop_speed.py): NPO, GradDiff and SimNPO against the
#      Hugging Face Trainer peer on the device (length-grouped passes use the device's own
#      per-pass cost, CausalLMAdapter.group_overhead_tokens);
#   3. the LM evaluation (lm_loop_speed.py --eval): the full LM metric set against one NPO run.
#
# The device machine runs its image's python3 (PyTorch with CUDA, transformers, peft,
# accelerate, scikit-learn, ...) and reaches no package index, so the few packages it lacks
# travel as wheels. Here, once per session:
#     bash benchmarks/device_check.sh prepare        # writes .device-wheels/ (git-ignored)
# then, through the device tool:
#     run(command="bash benchmarks/device_check.sh", carry=[".device-wheels"], timeout_s=560)
# Results come back under $OUT (device_check.log and one folder per part); commit them under
# benchmarks/results/device/ with this command.
#
# A dry run on this machine's CPU checks the script itself (tiny sizes, a minute or two):
#     DEVICE=cpu SMALL=1 OUT=/tmp/device_check bash benchmarks/device_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "prepare" ]; then
    # SQLAlchemy (the store), rouge-score and nltk (ROUGE-L) are what the image lacks; the
    # image's python3 is 3.12 on x86-64 (KINDS.md)
    rm -rf .device-wheels && mkdir -p .device-wheels
    python3 -m pip download -q --only-binary=:all: --no-deps --python-version 3.12 \
        --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 -d .device-wheels \
        "SQLAlchemy>=2.0" greenlet nltk
    python3 -m pip wheel -q --no-deps -w .device-wheels rouge-score
    ls .device-wheels
    exit 0
fi

DEVICE=${DEVICE:-cuda}
OUT=${OUT:-/tmp/device_check}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src" PYTHONUNBUFFERED=1
exec > >(tee "$OUT/device_check.log") 2>&1

if [ -d .device-wheels ]; then
    $PY -m pip install -q --no-index --no-deps .device-wheels/*.whl
fi
echo "== $(date -u +%FT%TZ) device $DEVICE, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
$PY -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())"

if [ -n "${SMALL:-}" ]; then
    AUDIT=(--methods npo --n-shadow 4)
    LM=(--people 10 --qa 4 --steps 4 --batch-size 8 --reps 1)
    LM_EVAL=(--people 10 --qa 4)
else
    AUDIT=(--methods scrub,finetune,npo --n-shadow 16)
    LM=(--people 100 --qa 10 --steps 20 --batch-size 32 --reps 3)
    LM_EVAL=(--people 100 --qa 10)
fi
HOME_DIR="$OUT/.lmhome"  # the LM original is trained once, then reused by both LM parts

# each part has its own time limit, so one slow part leaves the others their time
status=0
echo "== 1. privacy audit on $DEVICE"
timeout 150 $PY benchmarks/privacy_audit.py --device "$DEVICE" "${AUDIT[@]}" --out "$OUT/audit" || status=$?
echo "== 2. LM loop against the Trainer peer on $DEVICE"
timeout 240 $PY benchmarks/lm_loop_speed.py --device "$DEVICE" "${LM[@]}" --methods npo,graddiff,simnpo \
    --home "$HOME_DIR" --out "$OUT/lm" || status=$?
echo "== 3. LM evaluation against one NPO run on $DEVICE"
timeout 120 $PY benchmarks/lm_loop_speed.py --device "$DEVICE" "${LM_EVAL[@]}" --eval \
    --home "$HOME_DIR" --out "$OUT/lm" || status=$?
rm -rf "$HOME_DIR"  # model files are not results (and too many to come back)
echo "== done, status $status"
exit $status
