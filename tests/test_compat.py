"""Each shim of dmue_mm.compat, with a check that the stack breaks without
it."""
import pickle

import cv2
import mmcv
import mmcv.image
import mmcv.image.photometric
import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.logging import HistoryBuffer
from mmengine.optim import build_optim_wrapper as _build_optim_wrapper
from mmengine.registry import DefaultScope
from mmengine.runner import load_checkpoint, save_checkpoint
from PIL import Image

from dmue_mm import compat
from mmpretrain.datasets.transforms import ColorJitter


class TestCheckpointLoader:

    def _runner_like_checkpoint(self, path):
        model = nn.Linear(3, 2)
        buffer = HistoryBuffer()
        buffer.update(1.5)
        # what MMEngine's Runner stores besides the weights
        meta = dict(
            epoch=1,
            iter=5,
            message_hub=dict(log_scalars={'train/loss': buffer}),
            seed=np.int64(3),
            dtype=np.dtype('float32'))
        save_checkpoint(
            dict(state_dict=model.state_dict(), meta=meta), str(path))
        return model

    def test_torch_load_rejects_runner_checkpoints(self, tmp_path):
        # the breakage the shim exists for (torch >= 2.6 default)
        path = tmp_path / 'ckpt.pth'
        self._runner_like_checkpoint(path)
        with pytest.raises(pickle.UnpicklingError):
            torch.load(path)

    def test_mmengine_loads_runner_checkpoints(self, tmp_path):
        path = tmp_path / 'ckpt.pth'
        model = self._runner_like_checkpoint(path)
        other = nn.Linear(3, 2)
        ckpt = load_checkpoint(other, str(path), map_location='cpu')
        assert ckpt['meta']['iter'] == 5
        assert ckpt['meta']['message_hub']['log_scalars'][
            'train/loss'].current() == 1.5
        assert torch.equal(other.weight, model.weight)

    def test_missing_file_names_it(self, tmp_path):
        with pytest.raises(FileNotFoundError, match='nope.pth'):
            compat.load_local_checkpoint(str(tmp_path / 'nope.pth'))

    @pytest.mark.parametrize('payload', ['open', 'getattr'])
    def test_crafted_file_is_refused_and_does_not_run(
            self, tmp_path, monkeypatch, payload):
        """A pickle whose loading would create a file (directly, or through
        ``getattr`` on an allowed class) is refused; the file is not made."""
        monkeypatch.delenv(compat.TRUST_CHECKPOINT_ENV, raising=False)
        marker = tmp_path / 'payload_ran'
        path = tmp_path / 'evil.pth'
        torch.save(
            dict(state_dict=nn.Linear(3, 2).state_dict(),
                 meta=_Payload(str(marker), payload)), path)
        for load in (compat.load_local_checkpoint,
                     lambda p: load_checkpoint(nn.Linear(3, 2), p)):
            with pytest.raises(compat.UnsafeCheckpointError) as exc:
                load(str(path))
            message = str(exc.value)
            assert str(path) in message and '--trust-checkpoint' in message
            assert compat.TRUST_CHECKPOINT_ENV in message
            assert not marker.exists()

    def test_trusted_legacy_file_needs_the_opt_in(self, tmp_path,
                                                  monkeypatch):
        marker = tmp_path / 'payload_ran'
        path = tmp_path / 'legacy.pth'
        torch.save(dict(meta=_Payload(str(marker), 'open')), path)
        monkeypatch.setenv(compat.TRUST_CHECKPOINT_ENV, '1')
        compat.load_local_checkpoint(str(path))
        assert marker.exists()  # fully unpickled, as asked

    def test_only_types_are_allowed(self):
        """No general callable: the allowed ``getattr`` reaches the four
        statistics methods of ``HistoryBuffer`` and nothing else."""
        allowed = dict(
            (entry[1], entry[0]) if isinstance(entry, tuple) else
            (f'{entry.__module__}.{entry.__qualname__}', entry)
            for entry in compat.RUNNER_SAFE_GLOBALS)
        restricted = allowed.pop('builtins.getattr')
        assert restricted is not getattr
        assert restricted(HistoryBuffer, 'mean') is HistoryBuffer.mean
        for owner, name in ((HistoryBuffer, 'update'), (np, 'save'),
                            (HistoryBuffer, '__init__')):
            with pytest.raises(pickle.UnpicklingError):
                restricted(owner, name)
        functions = {
            name
            for name, value in allowed.items() if not isinstance(value, type)
        }
        assert functions <= {
            f'numpy.{core}.multiarray.{fn}'
            for core in ('core', '_core') for fn in ('_reconstruct', 'scalar')
        }


class _Payload:
    """Unpickling it calls ``open(path, 'w')`` (creating the file), or
    ``getattr(HistoryBuffer, 'update')``, an attribute outside the allowed
    statistics methods (standing in for any other attribute lookup)."""

    def __init__(self, path, how):
        self.path, self.how = path, how

    def __reduce__(self):
        if self.how == 'open':
            return open, (self.path, 'w')
        return getattr, (HistoryBuffer, 'update')


def _hue_reference(img_bgr, factor, backend):
    """Shift the hue byte by int(factor * 255) modulo 256."""
    shift = int(factor * 255)
    if backend == 'cv2':
        hsv = cv2.cvtColor(img_bgr, cv2.COLOR_BGR2HSV_FULL).astype(np.int64)
        hsv[..., 0] = (hsv[..., 0] + shift) % 256
        return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR_FULL)
    hsv = np.array(
        Image.fromarray(img_bgr[..., ::-1]).convert('HSV')).astype(np.int64)
    hsv[..., 0] = (hsv[..., 0] + shift) % 256
    rgb = Image.fromarray(hsv.astype(np.uint8), 'HSV').convert('RGB')
    return np.array(rgb)[..., ::-1]


class TestAdjustHue:

    def test_numpy2_breaks_the_original_cast(self):
        with pytest.raises(OverflowError):
            np.uint8(-0.1 * 255)

    def test_every_public_name_is_patched(self):
        for fn in (mmcv.adjust_hue, mmcv.image.adjust_hue,
                   mmcv.image.photometric.adjust_hue):
            assert fn is compat.adjust_hue

    @pytest.mark.parametrize('backend', ['cv2', 'pillow'])
    @pytest.mark.parametrize('factor', [-0.5, -0.27, -0.01, 0.0, 0.13, 0.5])
    def test_matches_modular_shift(self, backend, factor):
        rng = np.random.default_rng(0)
        img = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        out = mmcv.adjust_hue(img, factor, backend=backend)
        assert out.dtype == np.uint8 and out.shape == img.shape
        np.testing.assert_array_equal(
            out, _hue_reference(img, factor, backend))

    def test_color_jitter_with_hue_runs_on_every_draw(self):
        rng = np.random.default_rng(1)
        jitter = ColorJitter(hue=0.5)
        for _ in range(50):  # about half of the draws are negative
            img = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            out = jitter(dict(img=img))['img']
            assert out.shape == (8, 8, 3)

    def test_bad_arguments(self):
        img = np.zeros((4, 4, 3), np.uint8)
        with pytest.raises(ValueError, match='hue_factor'):
            compat.adjust_hue(img, 0.7)
        with pytest.raises(ValueError, match='backend'):
            compat.adjust_hue(img, 0.1, backend='tk')


def build_optim_wrapper(model, cfg):
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return _build_optim_wrapper(model, cfg)


class TestBF16AmpOptimWrapper:

    def test_autocast_bf16_and_step(self):
        model = nn.Linear(4, 2)
        wrapper = build_optim_wrapper(
            model,
            dict(
                type='BF16AmpOptimWrapper',
                optimizer=dict(type='SGD', lr=0.1)))
        before = model.weight.detach().clone()
        with wrapper.optim_context(model):
            out = model(torch.randn(3, 4))
        assert out.dtype == torch.bfloat16
        wrapper.update_params(out.float().pow(2).mean())
        assert not torch.equal(before, model.weight)
        assert model.weight.dtype == torch.float32

    def test_stock_amp_wrapper_needs_a_gpu(self):
        if torch.cuda.is_available():
            pytest.skip('a GPU is present')
        with pytest.raises(AssertionError):
            build_optim_wrapper(
                nn.Linear(2, 2),
                dict(type='AmpOptimWrapper', optimizer=dict(type='SGD',
                                                            lr=0.1)))


class TestAdaptCfgToMachine:

    def _cfg(self, launcher='none'):
        return Config(
            dict(
                launcher=launcher,
                optim_wrapper=dict(
                    type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1)),
                env_cfg=dict(dist_cfg=dict(backend='nccl'))))

    def test_gpu_amp_is_mmpretrain_default(self):
        cfg = compat.adapt_cfg_to_machine(
            self._cfg(), amp=True, gpu_available=lambda: True)
        assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
        assert cfg.optim_wrapper.loss_scale == 'dynamic'

    def test_cpu_amp_is_bf16(self):
        cfg = compat.adapt_cfg_to_machine(
            self._cfg(), amp=True, gpu_available=lambda: False)
        assert cfg.optim_wrapper.type == 'BF16AmpOptimWrapper'
        assert 'loss_scale' not in cfg.optim_wrapper

    def test_gpu_ddp_untouched(self):
        cfg = compat.adapt_cfg_to_machine(
            self._cfg('pytorch'), gpu_available=lambda: True)
        assert cfg.env_cfg.dist_cfg.backend == 'nccl'
        assert cfg.get('model_wrapper_cfg') is None

    def test_cpu_ddp_uses_gloo_without_device_ids(self, monkeypatch):
        launched = []
        monkeypatch.setattr(compat, '_init_cpu_process_group',
                            launched.append)
        cfg = compat.adapt_cfg_to_machine(
            self._cfg('pytorch'), gpu_available=lambda: False)
        assert cfg.env_cfg.dist_cfg.backend == 'gloo'
        assert cfg.model_wrapper_cfg.device_ids is None
        assert cfg.model_wrapper_cfg.type == 'MMDistributedDataParallel'
        assert launched == ['pytorch']

    def test_cpu_slurm_is_refused_clearly(self):
        with pytest.raises(ValueError, match='slurm'):
            compat._init_cpu_process_group('slurm')
