"""Strict pretrained initialisation of the recipes: a valid file fills the
trunk and every branch copy; a missing file, a wrong prefix, a partial file
and a wrong shape fail in one line; from scratch is explicit and warned."""
import copy
import logging
import os.path as osp
import re

import pytest
import torch
from conftest import CONFIGS, TOOLS, data_root_options, run_tool
from dmue_testing import TINY_RESNET, one_thread, quiet_init  # noqa: F401
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmpretrain.registry import MODELS

import dmue_mm  # noqa: F401
from dmue_mm.engine import PretrainedError

K = 4
LAYER4 = re.compile(r'layer4\.(.+)$')


def random_backbone_state(backbone_cfg: dict, seed: int = 0) -> dict:
    """Every tensor of the backbone random (BN statistics and
    ``num_batches_tracked`` included), as after pretraining."""
    torch.manual_seed(seed)
    backbone = MODELS.build(copy.deepcopy(backbone_cfg))
    state = {}
    for key, value in backbone.state_dict().items():
        if value.is_floating_point():
            value = torch.rand_like(value) + 0.5
        else:
            value = torch.full_like(value, 7)
        state[key] = value
    return state


def save(path, state: dict, prefix: str = 'backbone.') -> str:
    torch.save(dict(state_dict={prefix + k: v for k, v in state.items()},
                    meta=dict(epoch=18)), path)
    return str(path)


def build(backbone_cfg: dict, checkpoint, num_classes: int = K, **head):
    cfg = dict(copy.deepcopy(backbone_cfg))
    cfg['init_cfg'] = dict(type='StrictPretrained', checkpoint=checkpoint,
                           prefix='backbone.')
    model = MODELS.build(
        dict(type='DMUEClassifier', backbone=cfg,
             head=dict(type='DMUEHead', num_classes=num_classes, **head)))
    quiet_init(model)
    return model


def assert_fills_trunk_and_branches(model, pretrained: dict,
                                    num_classes: int) -> None:
    """Tensor by tensor: the backbone equals the file, and every copy of
    the last stage in the head equals the file's ``layer4``."""
    backbone = model.backbone.state_dict()
    assert set(backbone) == set(pretrained)
    for key, value in pretrained.items():
        assert torch.equal(backbone[key], value), key
    copies = 0
    for key, value in model.state_dict().items():
        match = LAYER4.search(key)
        if key.startswith('backbone.') or match is None:
            continue
        assert torch.equal(value, pretrained['layer4.' + match.group(1)]), key
        copies += 1
    stage = sum(k.startswith('layer4.') for k in pretrained)
    assert copies == num_classes * stage


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert '\n' not in message
    return message


class TestRecipe:

    def test_valid_file_fills_trunk_and_every_branch(self, tmp_path):
        cfg = Config.fromfile(osp.join(CONFIGS, 'dmue', 'res18_rafdb.py'))
        backbone_cfg = {
            k: v for k, v in cfg.model.backbone.items() if k != 'init_cfg'
        }
        state = random_backbone_state(backbone_cfg)
        cfg.model.backbone.init_cfg.checkpoint = save(
            tmp_path / 'faceres18_msceleb.pth', state)
        model = MODELS.build(cfg.model)
        quiet_init(model)
        assert_fills_trunk_and_branches(model, state, 7)

    def test_convert_msceleb_output_fills_the_recipe(self, tmp_path):
        from test_converters.original_format import msceleb

        from dmue_mm.converters import convert_msceleb
        raw = msceleb('r18', seed=4)
        src = str(tmp_path / 'mv_epoch_17.pt')
        torch.save(raw, src)
        out = str(tmp_path / 'pretrain' / 'faceres18_msceleb.pth')
        convert_msceleb(src, out)  # the documented command's output
        cfg = Config.fromfile(
            osp.join(CONFIGS, '_base_', 'models',
                     'dmue_faceres18_released.py'))
        cfg.model.head.num_classes = K
        cfg.model.backbone.init_cfg.checkpoint = out
        model = MODELS.build(cfg.model)
        quiet_init(model)
        pretrained = {
            k[len('feat_net.'):]: v
            for k, v in raw['state_dict'].items()
            if k.startswith('feat_net.')
        }
        assert_fills_trunk_and_branches(model, pretrained, K)

    def test_missing_file_fails_in_one_line_from_train_py(self, tmp_path,
                                                          image_folder):
        config = tmp_path / 'missing.py'
        config.write_text(
            f"_base_ = [{osp.join(CONFIGS, 'dmue', 'res18_generated.py')!r}]"
            "\nmodel = dict(backbone=dict(base_channels=8, stem_channels=8,"
            " init_cfg=dict(type='StrictPretrained', checkpoint="
            "'pretrain/nope.pth', prefix='backbone.', pretrain_config="
            "'configs/pretrain/faceres18_mvsoftmax_msceleb.py')),"
            " head=dict(num_classes=4))\n"
            "data_preprocessor = dict(num_classes=4)\n")
        result = run_tool(
            [osp.join(TOOLS, 'train.py'), str(config), '--work-dir',
             str(tmp_path / 'work'), '--cfg-options',
             *data_root_options(image_folder)], timeout=240, check=False)
        assert result.returncode == 2, result.stderr[-2000:]
        lines = [line for line in result.stderr.splitlines()
                 if line.startswith('error:')]
        assert lines == [
            "error: pretrained checkpoint 'pretrain/nope.pth' of the "
            'ResNet not found: make it with python tools/convert.py '
            'msceleb mv_epoch_17.pt -o pretrain/nope.pth (the authors\' '
            'MS-Celeb-1M weights), or train '
            'configs/pretrain/faceres18_mvsoftmax_msceleb.py and copy its '
            'last epoch_*.pth to pretrain/nope.pth; or set the init_cfg '
            'checkpoint to None to train from scratch'
        ]
        assert not osp.exists(tmp_path / 'work' / 'epoch_1.pth')


class TestStrict:

    @pytest.fixture(scope='class')
    def state(self):
        return random_backbone_state(TINY_RESNET)

    def test_valid_file(self, tmp_path, state):
        # MMPretrain's ResNet would zero its residual BNs after the init
        model = build(TINY_RESNET, save(tmp_path / 'ok.pth', state))
        assert_fills_trunk_and_branches(model, state, K)

    def test_wrong_prefix(self, tmp_path, state):
        path = save(tmp_path / 'orig.pth', state, prefix='feat_net.')
        with pytest.raises(PretrainedError) as excinfo:
            build(TINY_RESNET, path)
        message = one_line_error(excinfo)
        assert f"pretrained checkpoint '{path}' does not fill" in message
        assert "no 'backbone.conv1.weight' (the first of " in message
        assert "no key starting with 'backbone.'" in message

    def test_partial_file(self, tmp_path, state):
        partial = {k: v for k, v in state.items()
                   if not k.startswith('layer4.')}
        with pytest.raises(PretrainedError) as excinfo:
            build(TINY_RESNET, save(tmp_path / 'part.pth', partial))
        first = next(k for k in state if k.startswith('layer4.'))
        assert f"no 'backbone.{first}' (the first of " in one_line_error(
            excinfo)

    def test_wrong_shape(self, tmp_path, state):
        wide = random_backbone_state(dict(TINY_RESNET, base_channels=16))
        wide = {k: wide[k] for k in state}  # same keys, other shapes
        with pytest.raises(PretrainedError) as excinfo:
            build(TINY_RESNET, save(tmp_path / 'wide.pth', wide))
        message = one_line_error(excinfo)
        assert re.search(r"'backbone\.[\w.]+' has shape \(.*\) in the file "
                         r'and \(.*\) in the model', message), message

    def test_foreign_key(self, tmp_path, state):
        extra = dict(state, **{'layer5.weight': torch.ones(1)})
        with pytest.raises(PretrainedError) as excinfo:
            build(TINY_RESNET, save(tmp_path / 'extra.pth', extra))
        assert "'backbone.layer5.weight' is not a key of the model" in (
            one_line_error(excinfo))

    def test_from_scratch_is_logged(self):
        records = []
        handler = logging.Handler()
        handler.emit = records.append
        logger = MMLogger.get_current_instance()
        logger.addHandler(handler)
        try:
            build(TINY_RESNET, None)
        finally:
            logger.removeHandler(handler)
        warnings = [r.getMessage() for r in records
                    if r.levelno == logging.WARNING]
        assert any('trains from scratch' in w for w in warnings), warnings
