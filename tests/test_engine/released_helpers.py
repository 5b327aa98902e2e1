"""Tiny runs of the released DMUE protocol on generated data (shared by the
in-process and the gloo tests)."""
import json
import os
import os.path as osp
from typing import List, Sequence

from conftest import CONFIGS

from dmue_mm.utils import write_image_folder

CLASSES = ('angry', 'happy', 'neutral', 'sad')
PER_CLASS = 10
# Batches of 8 in this order (DefaultSampler, no shuffle): batches 0 and 2
# have every class twice; batch 1 lacks classes 2 and 3, batches 3 and 4
# hold a single sample of classes 0 and 1.
ORDER = ([0, 0, 1, 1, 2, 2, 3, 3] + [0, 0, 0, 0, 1, 1, 1, 1] +
         [0, 0, 1, 1, 2, 2, 3, 3] + [0, 1, 2, 2, 2, 3, 3, 3] * 2)
USABLE = [0, 2]
GENERATED = osp.join(CONFIGS, 'dmue', 'res18_generated.py')


def write_folder(root: str, order: Sequence[int] = ORDER) -> str:
    """The generated folder plus ``train_list.txt`` listing the training
    images with the labels in ``order``."""
    write_image_folder(root, CLASSES, {'train': PER_CLASS, 'val': 3},
                       size=32)
    files = {
        c: sorted(os.listdir(osp.join(root, 'train', name)))
        for c, name in enumerate(CLASSES)
    }
    lines = [f'{CLASSES[c]}/{files[c].pop(0)} {c}' for c in order]
    with open(osp.join(root, 'train_list.txt'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return root


def config_text(data_root: str,
                iters=2,
                val_iters=None,
                skip_batches=False,
                max_epochs=2,
                batch_size=8,
                lr=1e-4,
                extra_hooks: Sequence[str] = ('ModeRecorderHook', ),
                total_batch_size=None,
                released_code=True) -> str:
    """A config file inheriting the generated-data recipe with the released
    protocol's loop and hooks, deterministic data (no augmentation, no
    shuffle) and a narrow ResNet-18."""
    hooks = ', '.join(f"dict(type='{h}')" for h in extra_hooks)
    return f'''
_base_ = [{GENERATED!r}]
custom_imports = dict(imports=['dmue_mm', 'recorder_hooks'],
                      allow_failed_imports=False)
num_classes = {len(CLASSES)}
data_preprocessor = dict(num_classes=num_classes)
model = dict(
    backbone=dict(base_channels=8, stem_channels=8),
    head=dict(num_classes=num_classes, released_code={released_code}))
pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
train_dataloader = dict(
    batch_size={batch_size},
    dataset=dict(data_root={data_root!r}, data_prefix='train',
                 ann_file='train_list.txt', pipeline=pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_dataloader = dict(dataset=dict(data_root={data_root!r}))
test_dataloader = val_dataloader
optim_wrapper = dict(optimizer=dict(lr={lr}))
train_cfg = dict(_delete_=True, type='DMUETrainLoop',
                 max_epochs={max_epochs}, val_interval=1,
                 val_iters={val_iters}, skip_batches={skip_batches})
default_hooks = dict(
    checkpoint=dict(type='InEpochCheckpointHook', save_best='auto',
                    rule='greater'),
    eval_mode=dict(type='EvalModeSwitchHook', iters={iters}))
custom_hooks = [dict(type='BranchPruningHook'), {hooks}]
total_batch_size = {total_batch_size}
log_level = 'WARNING'
'''


def write_config(folder: str, name: str = 'run.py', **kwargs) -> str:
    path = osp.join(folder, name)
    with open(path, 'w') as f:
        f.write(config_text(**kwargs))
    return path


def read_modes(work_dir: str, rank: int = 0) -> List[dict]:
    with open(osp.join(work_dir, f'modes_rank{rank}.json')) as f:
        return json.load(f)


def assert_switch(records: List[dict], iters, epochs: int,
                  batches: Sequence[int]) -> None:
    """Train mode before ``iters`` in every epoch, eval mode (every BN,
    every dropout) from it to the epoch end."""
    seen = [(r['epoch'], r['batch_idx']) for r in records]
    assert seen == [(e, b) for e in range(epochs) for b in batches]
    for record in records:
        training = iters is None or record['batch_idx'] < iters
        assert record['bn'] and record['dropout']
        assert set(record['bn']) == {training}, record
        assert set(record['dropout']) == {training}, record
