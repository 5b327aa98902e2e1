#!/usr/bin/env bash
# The GPU checks of the DMUE head, as one prepared script (about 5 minutes on
# one GPU). Writes JSON files (and logs) into OUT_DIR:
#   train_speed.json  benchmarks/train_speed.py --device cuda: CE, DMUE and
#                     the released algorithm, K=8, batch 72, 224x224
#   amp_grads.json    one fp16-AMP step's gradients against fp32
#                     (benchmarks/amp_grad_check.py)
#   train_amp.json    20 iterations of tools/train.py --amp on generated
#                     data: the optimiser wrapper used and every logged loss
#   gpu_check.json    what ran, with the device, and whether all passed
#
# Usage: benchmarks/gpu_check.sh [OUT_DIR]           on a machine with CUDA
#        benchmarks/gpu_check.sh --dry-run [OUT_DIR] the same steps on the CPU
#                                                    with tiny sizes (tests)
# Environment: PYTHON (default: .venv/bin/python, else python3).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
DRY=0
if [ "${1:-}" = "--dry-run" ]; then DRY=1; shift; fi
OUT=${1:-work_dirs/gpu_check}
mkdir -p "$OUT"
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

# 20 training iterations: 7 classes x 10 images, batch 7, 2 epochs
PER_CLASS=10; BATCH=7; EPOCHS=2
if [ "$DRY" = 1 ]; then
    DEVICE=cpu
    # time only: memory runs start a process per model (tests cover them)
    SPEED=(--batch-size 6 --img-size 32 --num-classes 3 --repeats 1 --warmup 0 --memory-runs 0 --threads 1)
    AMP=(--batch-size 12 --img-size 64 --num-classes 3)  # layer4 at 2x2
    # a narrow ResNet-18: bf16 autocast on a CPU without bf16 units is slow
    EXTRA=(model.backbone.base_channels=8 model.backbone.stem_channels=8)
else
    DEVICE=cuda
    "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'error: no CUDA device (use --dry-run on a CPU)')"
    SPEED=(--batch-size 72 --img-size 224 --num-classes 8 --repeats 3 --warmup 1 --memory-runs 1)
    AMP=(--batch-size 72 --img-size 224 --num-classes 8)
    EXTRA=()
fi

echo "== 1/3 train_speed ($DEVICE)"
"$PYTHON" benchmarks/train_speed.py --device "$DEVICE" "${SPEED[@]}" \
    --out "$OUT/train_speed.json" 2>&1 | tee "$OUT/train_speed.log"

echo "== 2/3 fp16 AMP gradients vs fp32 ($DEVICE)"
"$PYTHON" benchmarks/amp_grad_check.py --device "$DEVICE" "${AMP[@]}" \
    --out "$OUT/amp_grads.json" 2>&1 | tee "$OUT/amp_grads.log"

echo "== 3/3 tools/train.py --amp, 20 iterations on generated data"
DATA="$OUT/generated"
"$PYTHON" -c "import sys; from dmue_mm.utils import write_image_folder; \
write_image_folder(sys.argv[1], [f'c{i}' for i in range(7)], \
{'train': int(sys.argv[2]), 'val': 1}, size=32)" "$DATA" "$PER_CLASS"
"$PYTHON" tools/train.py configs/dmue/res18_generated.py --amp \
    --work-dir "$OUT/train_amp" --cfg-options \
    "train_dataloader.dataset.data_root=$DATA" \
    "val_dataloader.dataset.data_root=$DATA" \
    "test_dataloader.dataset.data_root=$DATA" \
    "train_dataloader.batch_size=$BATCH" "train_cfg.max_epochs=$EPOCHS" \
    ${EXTRA[@]+"${EXTRA[@]}"} 2>&1 | tee "$OUT/train_amp.log"

"$PYTHON" - "$OUT" "$DEVICE" <<'EOF'
import glob, json, math, os.path as osp, sys
import torch
out, device = sys.argv[1], sys.argv[2]
(scalars, ) = glob.glob(osp.join(out, 'train_amp', '*', 'vis_data',
                                 'scalars.json'))
with open(scalars) as f:
    records = [json.loads(line) for line in f]
train = [r for r in records if 'loss_wce' in r]
log = open(osp.join(out, 'train_amp.log')).read()
wrapper = next((w for w in ('BF16AmpOptimWrapper', 'AmpOptimWrapper')
                if w in log), None)
losses = ('loss_wce', 'loss_soft', 'loss_sp', 'loss_aux')
train_amp = dict(
    iterations=max((r['iter'] for r in train), default=0),
    optim_wrapper=wrapper,
    finite=all(math.isfinite(r[k]) for r in train for k in losses),
    last={k: train[-1][k] for k in losses} if train else None)
with open(osp.join(out, 'train_amp.json'), 'w') as f:
    json.dump(train_amp, f, indent=1)
amp = json.load(open(osp.join(out, 'amp_grads.json')))
speed = json.load(open(osp.join(out, 'train_speed.json')))
summary = dict(
    device=torch.cuda.get_device_name() if device == 'cuda' else 'cpu',
    torch=torch.__version__,
    train_speed={k: dict(time=v.get('time_ratio', {}).get('wall'),
                         memory=v.get('memory_ratio'))
                 for k, v in speed['results'].items()},
    amp_grads_rel_error={k: v['rel_error'] for k, v in amp['parts'].items()},
    train_amp=train_amp,
    passed=(train_amp['finite'] and train_amp['iterations'] >= 20
            and all(v['finite'] for v in amp['parts'].values())))
with open(osp.join(out, 'gpu_check.json'), 'w') as f:
    json.dump(summary, f, indent=1)
print(json.dumps(summary, indent=1))
sys.exit(0 if summary['passed'] else 1)
EOF
