"""tools/convert.py: every subcommand end to end, one-line errors."""
import os.path as osp

import pytest
import torch
from conftest import CONFIGS, TOOLS, load_script, run_tool
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.runner.checkpoint import save_checkpoint

from dmue_testing import one_thread  # noqa: F401
from dmue_testing import sum_atol
from test_converters.deploy_helpers import (TINY_RESNET, deploy_model,
                                            dmue_cfg, trained_like)
from test_converters.original_format import (OriginalModel, msceleb, snapshot)

CONVERT = osp.join(TOOLS, 'convert.py')
K = 2


@pytest.fixture(scope='module')
def tool():
    return load_script(CONVERT, 'dmue_convert_tool')


def call(tool, argv, capsys):
    """Run ``main(argv)`` in-process; (exit code, stdout, stderr)."""
    try:
        tool.main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope='module')
def original_snapshot(tmp_path_factory):
    """An R18 K=2 snapshot with ``module.`` keys (the layer4 copies share
    storage to keep the file small)."""
    raw = snapshot('r18', K, True, seed=4, module=True)
    shared = {}
    for key in raw:
        if '.layer4_' in key:
            rest = key.split('.layer4_')[1].split('.', 1)[1]
            raw[key] = shared.setdefault(rest, raw[key])
    path = str(tmp_path_factory.mktemp('original') / 'ep7_acc0.6.pth')
    torch.save(raw, path)
    return path, raw


class TestSubcommands:

    def test_snapshot_to_plugin_and_deploy(self, original_snapshot, tmp_path):
        src, raw = original_snapshot
        out, deploy_dir = tmp_path / 'plugin.pth', tmp_path / 'deploy'
        result = run_tool([
            CONVERT, 'snapshot', src, '-o', out, '--deploy-dir', deploy_dir,
            '--classes', 'calm,smile'
        ],
                          timeout=240,
                          env={'OMP_NUM_THREADS': '1'})
        assert 'training snapshot: faceres18, K = 2, with BN-neck' in \
            result.stdout
        assert 'load_from=' in result.stdout
        plugin = torch.load(out, weights_only=True)
        assert plugin['meta']['dmue_mm']['num_classes'] == K
        assert len(plugin['state_dict']) == len(raw)
        model = deploy_model(
            str(deploy_dir / 'ep7_acc0.6_deploy.py'),
            str(deploy_dir / 'ep7_acc0.6.pth'))
        x = torch.randn(3, 3, 64, 64)
        with torch.no_grad():
            logits = model(x, mode='tensor')
        expected = OriginalModel(raw, K).target_logits(x)
        # the reference's functional calls vs the deploy model: each of the
        # face ResNet-18's 20 convs + fc (<= 512 x 3 x 3 products a sum) may
        # sum in another order
        assert (logits - expected).abs().max() <= sum_atol(
            expected, 512 * 9, layers=21)
        meta = torch.load(
            deploy_dir / 'ep7_acc0.6.pth', weights_only=True)['meta']
        assert meta['dataset_meta']['classes'] == ['calm', 'smile']

    def test_msceleb(self, tool, tmp_path, capsys):
        src = str(tmp_path / 'mv_epoch_17.pt')
        torch.save(msceleb('r18'), src)
        code, out, _ = call(tool, [
            'msceleb', src, '-o',
            str(tmp_path / 'init.pth'), '--num-classes', '3'
        ], capsys)
        assert code == 0
        assert 'MS-Celeb-1M pretraining: faceres18' in out
        state = torch.load(
            tmp_path / 'init.pth', weights_only=True)['state_dict']
        assert torch.equal(state['head.branches.2.layer4.1.conv2.weight'],
                           state['backbone.layer4.1.conv2.weight'])

    def test_deploy_from_a_run_checkpoint_then_onnx(self, tool, tmp_path,
                                                    capsys):
        cfg = Config.fromfile(
            osp.join(CONFIGS, '_base_', 'datasets', 'generated_folder.py'))
        cfg.model = dmue_cfg(TINY_RESNET, num_classes=4)
        model = trained_like(cfg.model)
        ckpt = str(tmp_path / 'epoch_2.pth')
        hub = MessageHub.get_instance('convert_tool_test')
        hub.update_scalar('train/loss', 0.5)
        save_checkpoint(
            dict(
                meta=dict(
                    cfg=cfg.pretty_text,
                    epoch=2,
                    dataset_meta=dict(classes=list('abcd'))),
                state_dict=model.state_dict(),
                message_hub=hub.state_dict()), ckpt)
        deploy_dir = tmp_path / 'deploy'
        code, out, err = call(
            tool, ['deploy', ckpt, '--deploy-dir',
                   str(deploy_dir)], capsys)
        assert code == 0, err
        assert 'plugin checkpoint: ResNet, K = 4, with BN-neck' in out
        config, weights = str(deploy_dir / 'deploy.py'), str(deploy_dir /
                                                             'epoch_2.pth')
        x = torch.randn(2, 3, 32, 32)
        with torch.no_grad():
            expected = model(x, mode='tensor')
            logits = deploy_model(config, weights)(x, mode='tensor')
        # same trunk kernels; only the folded classifier's 64-term sums
        assert (logits - expected).abs().max() <= sum_atol(expected, 64)

        code, out, err = call(tool, [
            'onnx', config, weights, '-o',
            str(tmp_path / 'm.onnx'), '--shape', '32', '32'
        ], capsys)
        assert code == 0, err
        assert 'dynamic batch' in out and 'max |logit diff|' in out
        diff = float(out.split('max |logit diff| ')[1].split()[0])
        # onnxruntime's kernels in all 21 layers (<= 64 x 3 x 3 products)
        assert diff <= sum_atol(expected, 64 * 9, layers=21)


class TestOneLineErrors:

    @pytest.mark.parametrize('argv,message', [
        (['target', '{src}', '--deploy-dir', '{tmp}'
          ], "use the 'snapshot' subcommand"),
        (['snapshot', '{tmp}/missing.pth', '-o', '{tmp}/x.pth'
          ], 'not found: check the path'),
        (['snapshot', '{src}'], 'nothing to write'),
        (['snapshot', '{src}', '--arch', 'r50ibn', '-o', '{tmp}/x.pth'],
         "key 'module.base.layer1.0.conv1.weight' (-> 'backbone.layer1.0."
         "conv1.weight') has shape (64, 64, 3, 3), the model expects "
         '(64, 64, 1, 1)'),
    ])
    def test_user_errors(self, tool, original_snapshot, tmp_path, capsys, argv,
                         message):
        src, _ = original_snapshot
        argv = [a.format(src=src, tmp=tmp_path) for a in argv]
        code, _, err = call(tool, argv, capsys)
        assert code == 2
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith('error: ')
        assert message in lines[0]
