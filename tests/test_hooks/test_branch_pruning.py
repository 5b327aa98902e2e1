"""BranchPruningHook during a real (tiny) DMUE run, and the deploy files
loaded by stock MMPretrain in a process that never imports the plugin."""
import glob
import json
import os.path as osp
import pickle
from types import SimpleNamespace

import cv2
import pytest
import torch
import torch.nn.functional as F
from conftest import CLASSES, CONFIGS, run_tool
from dmue_testing import sum_atol
from mmengine.config import Config
from mmengine.logging import MessageHub, MMLogger
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from mmpretrain.registry import MODELS

import dmue_mm  # noqa: F401  registers the plugin
from dmue_mm.compat import load_local_checkpoint
from dmue_mm.converters import DeploySpec, DeployWriter
from dmue_mm.hooks import BranchPruningHook
from test_converters.deploy_helpers import (TINY_RESNET, deploy_model,
                                            dmue_cfg, lmdb_data_cfg)

STOCK_TEST = osp.join(
    osp.dirname(__import__('mmpretrain').__file__), '.mim', 'tools', 'test.py')
# What a stock-only process does with the deploy files; it fails if the
# plugin gets imported on the way.
STOCK_SCRIPT = '''
import json, runpy, sys
import torch
cfg, ckpt, lmdb_cfg, val_root, out, images = sys.argv[1:7]
state = torch.load(ckpt, map_location='cpu', weights_only=True)
from mmpretrain.apis import ImageClassificationInferencer
inferencer = ImageClassificationInferencer(cfg, pretrained=ckpt)
preds = inferencer(images.split(','))
for argv in ([cfg, ckpt, '--work-dir', out + '/t1', '--out',
              out + '/preds.pkl'],
             [lmdb_cfg, ckpt, '--work-dir', out + '/t2', '--out',
              out + '/metrics.json', '--out-item', 'metrics',
              '--cfg-options', 'test_dataloader.dataset.data_root=' +
              val_root]):
    sys.argv = ['test.py'] + argv
    runpy.run_path(sys.argv_test, run_name='__main__')
assert 'dmue_mm' not in sys.modules, 'the plugin was imported'
json.dump(dict(scores=[p['pred_scores'].tolist() for p in preds],
               classes=[p['pred_class'] for p in preds],
               meta=state['meta']), open(out + '/inferencer.json', 'w'))
'''


def run_config(data_root: str, work_dir: str) -> Config:
    """The generated-data DMUE recipe, narrow and 4-class, saving the best
    accuracy checkpoint, with the hook."""
    cfg = Config.fromfile(osp.join(CONFIGS, 'dmue', 'res18_generated.py'))
    cfg.work_dir = work_dir
    cfg.model.backbone.update(base_channels=8, stem_channels=8)
    cfg.model.head.num_classes = len(CLASSES)
    cfg.data_preprocessor.num_classes = len(CLASSES)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = data_root
    cfg.default_hooks.checkpoint.update(
        save_best='accuracy/top1', rule='greater')
    cfg.default_hooks.logger.interval = 100
    cfg.custom_hooks = [dict(type='BranchPruningHook')]
    cfg.log_level = 'WARNING'
    cfg.train_cfg.max_epochs = 3
    return cfg


def target_logits(model, images):
    data = model.data_preprocessor(dict(inputs=list(images)), False)
    with torch.no_grad():
        return model(data['inputs'], mode='tensor')


def read_images(paths):
    return [torch.from_numpy(cv2.imread(p)).permute(2, 0, 1) for p in paths]


@pytest.fixture(scope='module')
def trained(image_folder, tmp_path_factory):
    torch.manual_seed(0)
    work_dir = str(tmp_path_factory.mktemp('pruning_run'))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        runner = Runner.from_cfg(run_config(image_folder, work_dir))
        runner.train()
    model = runner.model.eval()
    val = sorted(glob.glob(osp.join(image_folder, 'val', '*', '*.png')))
    return dict(
        runner=runner,
        model=model,
        work_dir=work_dir,
        deploy=osp.join(work_dir, 'deploy'),
        val=val)


class TestDuringTraining:

    def test_writes_config_last_and_the_current_best(self, trained):
        best = glob.glob(osp.join(trained['work_dir'], 'best_*.pth'))
        assert len(best) == 1
        files = sorted(
            osp.basename(p)
            for p in glob.glob(osp.join(trained['deploy'], '*')))
        assert files == sorted(
            ['deploy.py', 'last.pth',
             osp.basename(best[0])])

    def test_last_equals_the_trained_target_branch(self, trained):
        model = trained['model']
        assert model.head.bnneck.running_var.sub(1).abs().max() > 1e-3
        deploy = deploy_model(
            osp.join(trained['deploy'], 'deploy.py'),
            osp.join(trained['deploy'], 'last.pth'))
        images = read_images(trained['val'])
        expected = target_logits(model, images)
        logits = target_logits(deploy, images)
        # same trunk kernels on the same batch; only the folded classifier
        # sums its 64 features (base_channels 8) in another order
        assert (logits - expected).abs().max().item() <= sum_atol(
            expected, 64)
        assert torch.equal(logits.argmax(1), expected.argmax(1))

    def test_best_equals_the_best_checkpoint(self, trained):
        (best, ) = glob.glob(osp.join(trained['work_dir'], 'best_*.pth'))
        cfg = trained['runner'].cfg
        model = MODELS.build(
            dict(cfg.model, data_preprocessor=cfg.data_preprocessor))
        model.load_state_dict(load_local_checkpoint(best)['state_dict'])
        model.eval()
        deploy = deploy_model(
            osp.join(trained['deploy'], 'deploy.py'),
            osp.join(trained['deploy'], osp.basename(best)))
        images = read_images(trained['val'])
        expected = target_logits(model, images)
        logits = target_logits(deploy, images)
        # same trunk kernels on the same batch; only the folded classifier
        # sums its 64 features (base_channels 8) in another order
        assert (logits - expected).abs().max().item() <= sum_atol(
            expected, 64)

    def test_rejects_unknown_test_data(self):
        with pytest.raises(ValueError, match='test_data'):
            BranchPruningHook(test_data='lmdb')


class TestStockMMPretrain:

    def test_loaded_without_the_plugin(self, trained, image_folder, tmp_path):
        deploy = trained['deploy']
        config, ckpt = (osp.join(deploy,
                                 'deploy.py'), osp.join(deploy, 'last.pth'))
        # the same model with the LMDB recipe's data: a stock image folder
        runner = trained['runner']
        lmdb_data = lmdb_data_cfg(runner.cfg.data_preprocessor,
                                  [dict(type='PackInputs')],
                                  dict(type='ExpressionMetric'))
        lmdb_cfg = DeployWriter(
            DeploySpec.from_model(trained['model'], runner.cfg.model),
            data_cfg=lmdb_data,
            classes=CLASSES).write_config(str(tmp_path / 'deploy_lmdb.py'))
        script = tmp_path / 'stock.py'
        script.write_text(
            STOCK_SCRIPT.replace('sys.argv_test', repr(STOCK_TEST)))
        images = trained['val'][:3]
        run_tool([
            str(script), config, ckpt, lmdb_cfg,
            osp.join(image_folder, 'val'),
            str(tmp_path), ','.join(images)
        ],
                 timeout=240,
                 env={'OMP_NUM_THREADS': '1'})

        logits = target_logits(trained['model'], read_images(trained['val']))
        expected = F.softmax(logits, 1)
        # other processes and batch sizes: every layer of the narrow
        # ResNet-18 target path (20 convs + fc, <= 64 x 3 x 3 products a
        # sum) may sum in another order; a probability moves by at most half
        # the largest logit change (the rows of the softmax Jacobian sum to
        # 2 p (1 - p) <= 1/2)
        atol = sum_atol(logits, 64 * 9, layers=21) / 2
        with open(tmp_path / 'inferencer.json') as f:
            inferred = json.load(f)
        torch.testing.assert_close(
            torch.tensor(inferred['scores']), expected[:3], atol=atol, rtol=0)
        assert inferred['meta']['dataset_meta']['classes'] == list(CLASSES)
        assert inferred['classes'] == [
            CLASSES[i] for i in expected[:3].argmax(1)
        ]
        # stock tools/test.py: the training config's image folder ...
        with open(tmp_path / 'preds.pkl', 'rb') as f:
            preds = pickle.load(f)
        scores = torch.stack([p['pred_score'] for p in preds])
        torch.testing.assert_close(scores, expected, atol=atol, rtol=0)
        labels = torch.tensor([p['gt_label'].item() for p in preds])
        accuracy = (scores.argmax(1) == labels).float().mean().item() * 100
        # ... and the LMDB recipe's config pointed at the same folder
        with open(tmp_path / 'metrics.json') as f:
            metrics = json.load(f)
        # a percentage of 16 counts in float32 vs float64: rel 1e-6 (8 eps)
        assert metrics['accuracy/top1'] == pytest.approx(accuracy)


class TestBestTracking:

    def test_new_best_replaces_the_previous_deploy_file(self, tmp_path):
        model_cfg = dmue_cfg(TINY_RESNET)
        hub = MessageHub.get_instance('pruning_best_tracking')
        runner = SimpleNamespace(
            model=MODELS.build(model_cfg),
            cfg=Config(dict(model=model_cfg)),
            work_dir=str(tmp_path),
            message_hub=hub,
            epoch=1,
            iter=5,
            logger=MMLogger.get_current_instance())
        hook = BranchPruningHook(out_dir='pruned', on_train_end=False)
        hook.before_train(runner)
        folder = tmp_path / 'pruned'
        hub.update_info('best_ckpt', str(tmp_path / 'best_acc_epoch_1.pth'))
        hook.after_val_epoch(runner, {})
        assert sorted(p.name for p in folder.iterdir()) == [
            'best_acc_epoch_1.pth', 'deploy.py'
        ]
        hook.after_val_epoch(runner, {})  # unchanged best: nothing new
        hub.update_info('best_ckpt', str(tmp_path / 'best_acc_epoch_3.pth'))
        hook.after_val_epoch(runner, {})
        assert sorted(p.name for p in folder.iterdir()) == [
            'best_acc_epoch_3.pth', 'deploy.py'
        ]
        hook.after_train(runner)  # on_train_end=False
        assert not (folder / 'last.pth').exists()
