"""The MV-Softmax pretraining recipes (docs/pretrain.md) on generated
identities."""
import math
import os
import os.path as osp
import re

import cv2
import pytest
import torch
from conftest import CONFIGS, run_tool
from mmengine.config import Config
from mmengine.optim import OptimWrapper
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

import dmue_mm  # noqa: F401  registers the plugin
from dmue_mm.utils import make_pattern_images

PRETRAIN = osp.join(CONFIGS, 'pretrain')
RECIPES = {
    'faceres18_mvsoftmax_msceleb.py': ('FaceResNet', 512, 128, 512),
    'r50ibn_mvsoftmax_msceleb.py': ('ResNetIBN', 2048, 64, 256),
}
NUM_IDS, PER_ID, SIZE = 3, 4, 36


@pytest.fixture(scope='module')
def identity_list(tmp_path_factory):
    """``root/images/id_<k>/<n>.png`` and ``root/train_list.txt`` with
    ``relpath identity`` lines."""
    root = tmp_path_factory.mktemp('identities')
    images, labels = make_pattern_images(NUM_IDS, PER_ID, size=SIZE, seed=3)
    lines = []
    for index, (img, label) in enumerate(zip(images, labels)):
        rel = f'id_{label:03d}/{index:04d}.png'
        os.makedirs(root / 'images' / f'id_{label:03d}', exist_ok=True)
        cv2.imwrite(str(root / 'images' / rel),
                    cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        lines.append(f'{rel} {label}')
    (root / 'train_list.txt').write_text('\n'.join(lines) + '\n')
    return str(root)


def small_run_options(root: str) -> list:
    """Tiny images, 3 identities, 1 epoch of 2 iterations."""
    return [
        f'train_dataloader.dataset.data_root={root}',
        'train_dataloader.batch_size=6',
        'train_dataloader.num_workers=0',
        f'train_dataloader.dataset.pipeline.1.scale=({SIZE},{SIZE})',
        'train_dataloader.dataset.pipeline.2.crop_size=32',
        f'model.head.num_classes={NUM_IDS}',
        f'data_preprocessor.num_classes={NUM_IDS}',
        'train_cfg.max_epochs=1',
        'default_hooks.logger.interval=1',
    ]


class TestPretrainRecipes:

    @pytest.mark.parametrize('name', sorted(RECIPES))
    def test_recipe_follows_spec(self, name):
        backbone, dim, batch, base_batch = RECIPES[name]
        cfg = Config.fromfile(osp.join(PRETRAIN, name))
        assert cfg.model.backbone.type == backbone
        head = cfg.model.head
        assert head.type == 'MVSoftmaxClsHead' and head.in_channels == dim
        assert (head.margin, head.mask_weight, head.scale) == (0.35, 1.12, 32)
        assert cfg.optim_wrapper.optimizer == dict(
            type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-4)
        assert cfg.param_scheduler.milestones == [10, 13, 16]
        assert cfg.param_scheduler.gamma == 0.1
        assert cfg.train_cfg.max_epochs == 18
        assert cfg.train_dataloader.batch_size == batch
        assert cfg.auto_scale_lr.base_batch_size == base_batch
        steps = [t['type'] for t in cfg.train_dataloader.dataset.pipeline]
        assert steps == ['LoadImageFromFile', 'Resize', 'RandomCrop',
                         'RandomFlip', 'PackInputs']
        assert cfg.data_preprocessor.mean == [127.5] * 3
        assert cfg.data_preprocessor.std == [127.5] * 3

    def test_r50ibn_model_trains_a_step(self):
        cfg = Config.fromfile(
            osp.join(PRETRAIN, 'r50ibn_mvsoftmax_msceleb.py'))
        cfg.model.head.num_classes = NUM_IDS
        model = MODELS.build(
            dict(cfg.model, data_preprocessor=cfg.data_preprocessor))
        data = dict(
            inputs=[torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
                    for _ in range(4)],
            data_samples=[DataSample().set_gt_label(i % NUM_IDS)
                          for i in range(4)])
        optim = torch.optim.SGD(model.parameters(), lr=0.1)
        losses = model.train_step(data, OptimWrapper(optim))
        assert math.isfinite(losses['loss'].item())

    def test_train_tool_one_epoch(self, identity_list, tmp_path):
        work_dir = tmp_path / 'work'
        result = run_tool(
            [osp.join('tools', 'train.py'),
             osp.join(PRETRAIN, 'faceres18_mvsoftmax_msceleb.py'),
             '--work-dir', work_dir, '--no-persistent-workers',
             '--cfg-options'] + small_run_options(identity_list),
            timeout=300)
        log = result.stdout + result.stderr
        losses = [float(v) for v in re.findall(r'\bloss: ([0-9.eE+-]+)', log)]
        assert len(losses) == 2 and all(map(math.isfinite, losses)), log
        ckpt = torch.load(
            work_dir / 'epoch_1.pth', map_location='cpu', weights_only=False)
        state = ckpt['state_dict']
        assert state['head.norm_product.weight'].shape == (NUM_IDS, 512)
        # the way the DMUE configs use it: the backbone's init_cfg
        backbone = MODELS.build(
            dict(
                type='FaceResNet',
                depth=18,
                init_cfg=dict(
                    type='Pretrained',
                    checkpoint=str(work_dir / 'epoch_1.pth'),
                    prefix='backbone.')))
        backbone.init_weights()
        loaded = backbone.state_dict()
        expected = {
            k[len('backbone.'):]: v
            for k, v in state.items() if k.startswith('backbone.')
        }
        assert set(loaded) == set(expected)
        for key, value in expected.items():
            # copies: bitwise equal
            torch.testing.assert_close(loaded[key], value, rtol=0, atol=0)


def test_identity_lmdb_recipe_trains_a_step(tmp_path):
    """The LMDB variant reads unnamed identity classes and trains."""
    from mmengine.dataset import pseudo_collate
    from mmpretrain.registry import DATASETS

    from dmue_mm.datasets import LMDBWriter
    lmdb_path = str(tmp_path / 'ids.lmdb')
    images, labels = make_pattern_images(NUM_IDS, PER_ID, size=SIZE, seed=5)
    with LMDBWriter(lmdb_path, NUM_IDS, resume=False) as writer:
        for index, (img, label) in enumerate(zip(images, labels)):
            writer.add('train', f'id_{label}/{index}.png', img, int(label))
    cfg = Config.fromfile(osp.join(PRETRAIN, 'faceres18_mvsoftmax_lmdb.py'))
    cfg.model.head.num_classes = NUM_IDS
    cfg.data_preprocessor.num_classes = NUM_IDS
    dataset_cfg = cfg.train_dataloader.dataset
    dataset_cfg.data_root = lmdb_path
    dataset_cfg.pipeline[0].scale = (SIZE, SIZE)
    dataset_cfg.pipeline[1].crop_size = 32
    dataset = DATASETS.build(dataset_cfg)
    assert len(dataset) == NUM_IDS * PER_ID
    assert [dataset.get_gt_labels()[i] for i in range(len(dataset))] == \
        labels.tolist()
    batch = pseudo_collate([dataset[i] for i in range(len(dataset))])
    assert batch['inputs'][0].shape == (3, 32, 32)
    model = MODELS.build(
        dict(cfg.model, data_preprocessor=cfg.data_preprocessor))
    optim = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = model.train_step(batch, OptimWrapper(optim))
    assert math.isfinite(losses['loss'].item())
