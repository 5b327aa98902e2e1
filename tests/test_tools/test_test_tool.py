"""tools/test.py on the cross-entropy baseline: expression metrics,
confusion-matrix PNG, JSON/pickle outputs, flip TTA, --show-dir, and the
checks of its config and checkpoint."""
import json
import os.path as osp
import pickle
import shutil
from glob import glob

import pytest
import torch
from PIL import Image

from conftest import (BASELINE_CFG, CLASSES, CONFIGS, TOOLS,
                      data_root_options, load_script, run_tool,
                      tensorboard_scalars)
from dmue_testing import save_untrained_checkpoint, sum_atol

TRAIN = osp.join(TOOLS, 'train.py')
TEST = osp.join(TOOLS, 'test.py')
NUM_VAL = 4 * len(CLASSES)  # the image_folder fixture: 4 val images a class


def load_test_tool():
    """Import tools/test.py as a module (it is not a package)."""
    return load_script(TEST, 'dmue_test_tool')


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory, image_folder):
    """A 1-epoch baseline checkpoint."""
    work_dir = str(tmp_path_factory.mktemp('ce_1epoch'))
    run_tool([
        TRAIN, BASELINE_CFG, '--work-dir', work_dir, '--no-validate',
        '--cfg-options', 'train_cfg.max_epochs=1',
        *data_root_options(image_folder,
                           ('train_dataloader', 'test_dataloader'))
    ],
             timeout=300)
    return osp.join(work_dir, 'epoch_1.pth')


@pytest.fixture(scope='module')
def fresh_checkpoint(tmp_path_factory):
    """An untrained baseline checkpoint with ``num_classes`` classes."""

    def make(num_classes=len(CLASSES)):
        path = tmp_path_factory.mktemp('fresh') / f'k{num_classes}.pth'
        return save_untrained_checkpoint(BASELINE_CFG, str(path),
                                         num_classes)

    return make


def tool_args(checkpoint, image_folder, work_dir, *extra):
    return [
        TEST, BASELINE_CFG, checkpoint, '--work-dir',
        str(work_dir), *extra, '--cfg-options',
        *data_root_options(image_folder, ('test_dataloader', ))
    ]


class TestTestTool:

    def test_tta_metrics_json_and_png(self, checkpoint, image_folder,
                                      tmp_path):
        out, png = tmp_path / 'x.json', tmp_path / 'cm' / 'cm.png'
        result = run_tool(
            tool_args(checkpoint, image_folder, tmp_path / 'w', '--tta',
                      '--out', out, '--cm-png', png),
            timeout=240)
        log = result.stdout + result.stderr
        assert 'AverageClsScoreTTA' in log
        metrics = json.loads(out.read_text())
        cm = metrics['expression/confusion_matrix']
        assert sum(map(sum, cm)) == NUM_VAL
        assert [sum(row) for row in cm] == [4] * len(CLASSES)
        assert metrics['expression/classes'] == list(CLASSES)
        # the config's Accuracy stays; both count the same predictions (a
        # ratio of counts: float32 in Accuracy, float64 here; rel 1e-6 is
        # 8 eps of float32)
        assert metrics['expression/top1'] == pytest.approx(
            metrics['accuracy/top1'])
        assert metrics['expression/top1'] == pytest.approx(
            100 * sum(cm[i][i] for i in range(len(CLASSES))) / NUM_VAL)
        assert metrics['expression/support_classwise'] == [4] * len(CLASSES)
        for key in ('mean_class_acc', 'macro_f1', 'nll', 'ece', 'temperature',
                    'nll_ts', 'ece_ts'):
            assert f'expression/{key}' in metrics
        assert metrics['expression/nll'] > 0
        # the printed table names every class, the PNG was written
        assert 'true \\ predicted' in log
        for name in CLASSES:
            assert name in log
        with Image.open(png) as image:
            assert image.format == 'PNG' and image.size[0] > 500

    def test_tensorboard_metrics(self, checkpoint, image_folder, tmp_path):
        """``--vis-backend tensorboard``: every scalar metric of ``--out``
        is in the event files (float32), at step 0."""
        pytest.importorskip('tensorboard', reason='pip install tensorboard')
        out, work_dir = tmp_path / 'm.json', tmp_path / 'w'
        run_tool(
            tool_args(checkpoint, image_folder, work_dir, '--vis-backend',
                      'tensorboard', '--out', out),
            timeout=240)
        metrics = json.loads(out.read_text())
        scalars = tensorboard_scalars(str(work_dir))
        expected = {
            k: v
            for k, v in metrics.items() if isinstance(v, (int, float))
        }
        assert {'accuracy/top1', 'expression/nll', 'expression/ece'} <= set(
            expected)
        assert set(scalars) == set(expected)
        for key, value in expected.items():
            ((step, got), ) = scalars[key]
            assert step == 0
            assert got == pytest.approx(value, rel=2**-24, abs=1e-30)

    def test_pickle_predictions_and_default_png(self, checkpoint, image_folder,
                                                tmp_path):
        out, work_dir = tmp_path / 'preds.pkl', tmp_path / 'w'
        run_tool(
            tool_args(checkpoint, image_folder, work_dir, '--out', out),
            timeout=240)
        with open(out, 'rb') as f:
            preds = pickle.load(f)
        assert len(preds) == NUM_VAL
        assert preds[0]['pred_score'].shape == (len(CLASSES), )
        assert glob(osp.join(work_dir, '*', 'confusion_matrix.png'))

    @pytest.mark.parametrize('extra, fragment', [
        (('--out', 'm.txt'), '.pkl'),
        (('--out-item', 'pred'), '--out-item needs --out'),
        (('--cm-png', 'cm.png', '--plain-evaluator'), '--cm-png needs'),
    ])
    def test_one_line_errors(self, checkpoint, image_folder, tmp_path,
                             monkeypatch, capsys, extra, fragment):
        """In process (cheaper than a subprocess): exit 2, one line."""
        tool = load_test_tool()
        monkeypatch.setattr('sys.argv', [
            str(a)
            for a in tool_args(checkpoint, image_folder, tmp_path, *extra)
        ])
        with pytest.raises(SystemExit) as exc:
            tool.main()
        assert exc.value.code == 2
        errors = [
            l for l in capsys.readouterr().err.splitlines()
            if l.startswith('error:')
        ]
        assert len(errors) == 1 and fragment in errors[0]


class _Payload:
    """Unpickling it creates the file ``path``."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return open, (self.path, 'w')


def test_crafted_checkpoint_refused(image_folder, tmp_path, monkeypatch,
                                    capsys):
    """A checkpoint whose unpickling runs code: one line, exit 2, and the
    code does not run."""
    monkeypatch.delenv('DMUE_TRUST_CHECKPOINT', raising=False)
    marker = tmp_path / 'payload_ran'
    ckpt = tmp_path / 'evil.pth'
    torch.save(dict(state_dict={}, meta=_Payload(str(marker))), ckpt)
    tool = load_test_tool()
    with pytest.raises(SystemExit) as exc:
        tool.main(
            [str(a) for a in tool_args(ckpt, image_folder, tmp_path)[1:]])
    assert exc.value.code == 2
    errors = [
        line for line in capsys.readouterr().err.splitlines()
        if line.startswith('error:')
    ]
    assert len(errors) == 1
    assert str(ckpt) in errors[0] and '--trust-checkpoint' in errors[0]
    assert not marker.exists()


def test_show_dir_writes_a_picture_per_image(fresh_checkpoint,
                                             image_folder, tmp_path):
    """Names that repeat across class folders (``val/<class>/000.png``, as
    LMDB keys and per-class numbered folders have them) still give every
    test image its own picture."""
    data = tmp_path / 'data'
    for cls in CLASSES:
        (data / 'val' / cls).mkdir(parents=True)
        images = sorted(glob(osp.join(image_folder, 'val', cls, '*.png')))
        for i, image in enumerate(images):
            shutil.copy(image, data / 'val' / cls / f'{i:03d}.png')
    show_dir = tmp_path / 'show'
    load_test_tool().main([
        str(a) for a in tool_args(fresh_checkpoint(), str(data), tmp_path,
                                  '--show-dir', show_dir)[1:]
    ])
    pictures = sorted(p.name for p in show_dir.rglob('*.png'))
    assert len(pictures) == NUM_VAL
    # dataset index, class folder and file name
    assert pictures[0] == f'000000_{CLASSES[0]}_000.png_0.png'
    assert {p.split('_')[1] for p in pictures} == set(CLASSES)


class TestMergeArgs:

    def test_no_workers_after_cfg_options(self, tmp_path):
        """``--cfg-options test_dataloader.num_workers=0`` on a recipe with
        persistent workers gives a loader PyTorch accepts."""
        tool = load_test_tool()
        config = osp.join(CONFIGS, 'dmue', 'res18_rafdb.py')
        ckpt = tmp_path / 'epoch_1.pth'
        ckpt.write_bytes(b'')  # merge_args only checks that it exists
        args = tool.parse_args([
            config,
            str(ckpt), '--cfg-options', 'test_dataloader.num_workers=0'
        ])
        cfg = tool.merge_args(tool.load_config(config), args)
        loader = cfg.test_dataloader
        assert loader.num_workers == 0
        torch.utils.data.DataLoader(
            list(range(4)),
            num_workers=loader.num_workers,
            persistent_workers=loader.persistent_workers)


class TestFlipTTA:

    def test_average_of_image_and_flip(self, checkpoint, image_folder):
        """--tta averages the softmax scores of the image and its mirror."""
        from mmengine.dataset import pseudo_collate
        from mmengine.registry import init_default_scope

        from mmpretrain.registry import DATASETS, MODELS

        tool = load_test_tool()
        args = tool.parse_args([
            BASELINE_CFG, checkpoint, '--tta', '--cfg-options',
            *data_root_options(image_folder, ('test_dataloader', ))
        ])
        cfg = tool.merge_args(tool.load_config(BASELINE_CFG), args)
        init_default_scope('mmpretrain')
        assert cfg.model.type == 'mmpretrain.AverageClsScoreTTA'
        torch.manual_seed(0)
        model = MODELS.build(cfg.model).eval()
        dataset = DATASETS.build(cfg.test_dataloader.dataset)
        item = dataset[0]
        views = item['inputs']
        assert len(views) == 2
        torch.testing.assert_close(views[0], views[1].flip(-1))

        with torch.no_grad():
            merged = model.test_step(pseudo_collate([item]))[0]
            single = [
                model.module.test_step(
                    dict(inputs=[view], data_samples=[sample]))[0].pred_score
                for view, sample in zip(views, item['data_samples'])
            ]
        # a batch of 2 views vs 2 batches of 1: the ResNet-18 (20 convs + fc,
        # <= 512 x 3 x 3 products a sum) may pick other kernels; scores move
        # by <= half the logit change (the scale: the logits' spread, which
        # is all the softmax sees, is bounded by |log p|)
        bound = sum_atol(merged.pred_score.log(), 512 * 9, layers=21) / 2
        torch.testing.assert_close(
            merged.pred_score, (single[0] + single[1]) / 2, rtol=0,
            atol=bound)
        assert not torch.allclose(single[0], single[1])
        assert merged.gt_label.item() == item['data_samples'][0].gt_label
