"""Original DMUE checkpoints (rebuilt with random values) convert,
load strictly, and give the original's logits and losses."""
import os.path as osp

import pytest
import torch
from conftest import CONFIGS
from dmue_testing import sum_atol
from mmengine.config import Config
from mmpretrain.registry import MODELS

import dmue_mm  # noqa: F401  registers the plugin
from dmue_mm.converters import (ArchitectureMismatchError, ConversionError,
                                DeployWriter, convert_target, parse_snapshot,
                                parse_target, plugin_checkpoint,
                                save_checkpoint)
from .deploy_helpers import deploy_model
from .original_format import (OriginalModel, balanced_labels, snapshot,
                              target_only)

pytestmark = pytest.mark.numeric

K = 8
SIZE = 64
# Same weights through another implementation (the reference's functional
# calls, the deploy model): each layer may sum in another order. The face
# ResNet-18 has 20 convs + fc, ResNet-50-IBN-a 53 + fc; their sums have at
# most 512 x 3 x 3 products.
LAYERS = {'r18': 21, 'r50ibn': 54}
FAN_IN = 512 * 9


def recipe_model(name: str, num_classes: int):
    """The DMUE model of a shipped base config (the one a user fine-tunes
    with ``load_from``), without initialisation."""
    cfg = Config.fromfile(osp.join(CONFIGS, '_base_', 'models', name)).model
    cfg.head.num_classes = num_classes
    return MODELS.build(cfg).eval()


def close(actual, expected, arch='r18'):
    """Equal within the rounding of :data:`LAYERS` reordered sums."""
    torch.testing.assert_close(
        actual,
        expected,
        rtol=0,
        atol=sum_atol(expected, FAN_IN, LAYERS[arch]))


def deploy_logits(files, x):
    model = deploy_model(files.config, files.checkpoint)
    with torch.no_grad():
        return model(x, mode='tensor'), Config.fromfile(files.config)


def check_terms(model, reference, x, y, arch='r18'):
    with torch.no_grad():
        terms = model.compute_terms(x, y)
        expected = reference.losses(x, y)
    # the terms are smooth functions of the features (cross-entropies,
    # squared differences of softmaxes and of normalised Gram matrices):
    # their relative error is that of the features, up to a factor 2 for
    # the squares
    rel = 2 * sum_atol(torch.ones(1), FAN_IN, LAYERS[arch])
    for name in ('wce', 'soft', 'aux', 'sp'):
        assert getattr(terms, name).item() == pytest.approx(
            float(expected[name]), rel=rel, abs=1e-7), name  # abs: terms ~0
    assert float(expected['sp']) > 1e-6  # not a vacuous comparison


class TestSpecKeys:

    @pytest.mark.parametrize('arch,bnneck,count', [('r18', True, 379),
                                                   ('r18', False, 374),
                                                   ('r50ibn', True, 843),
                                                   ('r50ibn', False, 838)])
    def test_key_counts(self, arch, bnneck, count):
        sd = snapshot(arch, K, bnneck, meta=True)
        assert len(sd) == count
        if (arch, bnneck) == ('r18', True):
            assert len(target_only(sd, K)) == 126  # make_target_model.py

    def test_shapes_of_spec(self):
        sd = snapshot('r18', K, True, meta=True)
        expected = {
            'base.conv1.weight': (64, 3, 7, 7),
            'base.layer4_8.0.downsample.0.weight': (512, 256, 1, 1),
            'classifiers.0.weight': (K - 1, 512),
            'classifiers.8.weight': (K, 512),
            'project_w.0.weight': (K, 2 * K),
            'project_w.1.weight': (1, ),
            'project_w.2.weight': (1, K),
            'bottleneck.running_var': (512, ),
        }
        for key, shape in expected.items():
            assert tuple(sd[key].shape) == shape, key


@pytest.fixture(scope='module')
def r18(tmp_path_factory):
    """R18 K=8 snapshot with BN-neck, ``module.`` prefixed, converted to a
    plugin checkpoint on disk and loaded into the shipped recipe's model."""
    raw = snapshot('r18', K, True, seed=0, module=True)
    weights = parse_snapshot(raw, 'ep7.pth')
    ckpt, spec = plugin_checkpoint(weights, 'ep7.pth')
    path = save_checkpoint(ckpt, str(tmp_path_factory.mktemp('r18') / 'p.pth'))
    loaded = torch.load(path, map_location='cpu', weights_only=True)
    model = recipe_model('dmue_faceres18.py', K)
    model.load_state_dict(loaded['state_dict'], strict=True)
    torch.manual_seed(0)
    x = torch.randn(2 * K, 3, SIZE, SIZE)
    return dict(
        raw=raw,
        weights=weights,
        spec=spec,
        model=model,
        x=x,
        reference=OriginalModel(raw, K))


class TestR18Snapshot:

    def test_inferred_layout(self, r18):
        weights = r18['weights']
        assert (weights.arch, weights.num_classes,
                weights.bnneck) == ('faceres18', K, True)
        assert weights.source_name('backbone.layer4.0.conv1.weight') == \
            'module.base.layer4_8.0.conv1.weight'
        assert weights.source_name('head.fc.weight') == \
            'module.classifiers.8.weight'

    def test_target_logits_equal_reference(self, r18):
        with torch.no_grad():
            logits = r18['model'](r18['x'], mode='tensor')
            expected = r18['reference'].target_logits(r18['x'])
        close(logits, expected)
        assert expected.std() > 0.1  # a non-trivial function of the input

    def test_every_loss_term_equals_reference(self, r18):
        check_terms(r18['model'], r18['reference'], r18['x'],
                    balanced_labels(K))

    def test_without_module_prefix_gives_the_same(self, r18):
        bare = parse_snapshot(snapshot('r18', K, True, seed=0), 'bare.pth')
        assert list(bare.state) == list(r18['weights'].state)
        for key, value in bare.state.items():
            assert torch.equal(value, r18['weights'].state[key]), key

    def test_deploy_equals_target_branch(self, r18, tmp_path):
        writer = DeployWriter(r18['spec'], source='ep7.pth')
        files = writer.write(r18['weights'].state, str(tmp_path), 'ep7')
        logits, cfg = deploy_logits(files, r18['x'])
        expected = r18['reference'].target_logits(r18['x'])
        close(logits, expected)
        assert torch.equal(logits.argmax(1), expected.argmax(1))
        assert cfg.model.type == 'ImageClassifier'
        assert cfg.model.head.type == 'LinearClsHead'
        assert cfg.custom_imports.imports == ['dmue_mm']  # FaceResNet


class TestR50IBNSnapshot:

    def test_converts_loads_and_matches_reference(self):
        num_classes = 3
        raw = snapshot('r50ibn', num_classes, bnneck=False, seed=1)
        weights = parse_snapshot(raw, 'r50.pth')
        assert (weights.arch, weights.bnneck) == ('r50ibn', False)
        ckpt, _ = plugin_checkpoint(weights, 'r50.pth')
        model = recipe_model('dmue_r50ibn.py', num_classes)
        model.load_state_dict(ckpt['state_dict'], strict=True)
        reference = OriginalModel(raw, num_classes)
        torch.manual_seed(1)
        x = torch.randn(4 * num_classes, 3, SIZE, SIZE)
        with torch.no_grad():
            close(model(x, mode='tensor'), reference.target_logits(x),
                  'r50ibn')
        check_terms(model, reference, x, balanced_labels(num_classes, 4),
                    'r50ibn')


class TestTargetOnly:

    def test_deploy_equals_target_branch(self, r18, tmp_path):
        bare = snapshot('r18', K, True, seed=0)
        src = str(tmp_path / 'AffectNet_res18.pth')
        torch.save(target_only(bare, K), src)
        result = convert_target(src, str(tmp_path / 'deploy'))
        logits, cfg = deploy_logits(result.deploy, r18['x'])
        expected = r18['reference'].target_logits(r18['x'])
        close(logits, expected)
        assert torch.equal(logits.argmax(1), expected.argmax(1))
        meta = torch.load(result.deploy.checkpoint, weights_only=True)['meta']
        assert meta['dataset_meta']['classes'][1] == 'Happiness'  # K=8

    def test_wrong_architecture_names_first_mismatch(self):
        bare = target_only(snapshot('r18', 2, True, meta=True), 2)
        weights = parse_target(bare, 'r18.pth', arch='r50ibn')
        with pytest.raises(ArchitectureMismatchError) as err:
            plugin_checkpoint(weights, 'r18.pth')
        message = str(err.value)
        assert "'base.layer1.0.conv1.weight'" in message
        assert '(64, 64, 3, 3)' in message and '(64, 64, 1, 1)' in message


class TestSnapshotErrors:

    @pytest.fixture
    def small(self):
        return snapshot('r18', 3, True, meta=True)

    def test_shape_mismatch_names_the_key(self, small):
        small['base.layer2.0.conv1.weight'] = torch.empty(
            128, 64, 1, 1, device='meta')
        weights = parse_snapshot(small, 'x.pth')
        with pytest.raises(
                ArchitectureMismatchError,
                match=r"'base\.layer2\.0\.conv1\.weight' .* has "
                r'shape \(128, 64, 1, 1\), the model expects '
                r'\(128, 64, 3, 3\)'):
            plugin_checkpoint(weights, 'x.pth')

    def test_missing_branch_copy(self, small):
        for key in [k for k in small if k.startswith('base.layer4_1.')]:
            del small[key]
        with pytest.raises(
                ConversionError,
                match=r'layer4_\* indices 0\.\.3'
                r', found \[0, 2, 3\]'):
            parse_snapshot(small, 'x.pth')

    def test_target_classifier_contradicts_k(self, small):
        small['classifiers.3.weight'] = torch.empty(2, 512, device='meta')
        with pytest.raises(
                ConversionError,
                match=r'classifiers\.3\.weight.*'
                r'must be \(K, D\) = \(3, D\)'):
            parse_snapshot(small, 'x.pth')

    def test_unknown_key(self, small):
        small['module_extra.weight'] = torch.empty(1, device='meta')
        with pytest.raises(
                ConversionError, match="unknown key "
                "'module_extra.weight'"):
            parse_snapshot(small, 'x.pth')

    def test_target_only_file_is_redirected(self):
        bare = target_only(snapshot('r18', 3, True, meta=True), 3)
        with pytest.raises(ConversionError, match="'target' subcommand"):
            parse_snapshot(bare, 'x.pth')

    def test_two_digit_branch_indices_are_parsed_not_matched(self):
        raw = snapshot('r18', 10, False, meta=True, module=True)
        weights = parse_snapshot(raw, 'k10.pth')
        assert weights.num_classes == 10
        name = weights.source_name
        assert name('head.branches.1.layer4.0.conv1.weight') == \
            'module.base.layer4_1.0.conv1.weight'
        assert name('backbone.layer4.0.conv1.weight') == \
            'module.base.layer4_10.0.conv1.weight'
        assert name('head.aux_fcs.1.weight') == 'module.classifiers.1.weight'
        assert name('head.fc.weight') == 'module.classifiers.10.weight'
        assert weights.state['head.fc.weight'].shape == (10, 512)
