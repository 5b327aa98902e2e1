"""A checkpoint of another shape is refused in one line naming the key and
both shapes."""
import re

import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseTTAModel

from dmue_mm.converters import ArchitectureMismatchError
from dmue_mm.hooks import check_checkpoint_fits


class TTA(BaseTTAModel):
    """A test-time augmentation wrapper (``tools/test.py --tta``)."""

    def merge_preds(self, data_samples_list):
        return data_samples_list[0]


class Net(nn.Sequential):
    """Linear, BN, Linear; ``test_step`` as a TTA wrapper requires."""

    def test_step(self, data):
        return self(data)


def model(num_classes=4):
    torch.manual_seed(0)
    return Net(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.Linear(5, num_classes))


def ckpt(state, fmt=None):
    meta = {} if fmt is None else dict(dmue_mm=dict(format=fmt))
    return dict(state_dict=state, meta=meta)


def test_exact_fit_passes_with_prefix_and_without_bn_counter():
    state = {f'module.{k}': v for k, v in model().state_dict().items()}
    del state['module.1.num_batches_tracked']  # MMEngine ignores it too
    check_checkpoint_fits(model(), ckpt(state), 'a.pth')


def test_shape_names_the_key_and_both_shapes():
    with pytest.raises(ArchitectureMismatchError) as exc:
        check_checkpoint_fits(model(4), ckpt(model(7).state_dict()), 'k7.pth')
    message = str(exc.value)
    assert "checkpoint 'k7.pth' does not fit" in message
    assert "key '2.weight' has shape (7, 5), the model expects (4, 5)" in \
        message


@pytest.mark.parametrize('edit, fragment', [
    (lambda s: s.pop('2.bias'), "missing key '2.bias' of shape (4)"),
    (lambda s: s.__setitem__('3.weight', torch.zeros(2)),
     "unexpected key '3.weight' with shape (2)"),
])
def test_missing_and_unexpected_keys(edit, fragment):
    state = model().state_dict()
    edit(state)
    with pytest.raises(ArchitectureMismatchError, match=re.escape(fragment)):
        check_checkpoint_fits(TTA(model()), ckpt(state), 'a.pth')


def test_documented_partial_files_may_miss_keys_not_change_shapes():
    """``convert.py msceleb``/``target`` files hold part of the model."""
    state = model().state_dict()
    del state['2.weight'], state['2.bias']
    check_checkpoint_fits(model(), ckpt(state, 'plugin-init'), 'init.pth')
    with pytest.raises(ArchitectureMismatchError, match='missing key'):
        check_checkpoint_fits(model(), ckpt(state, 'plugin'), 'snap.pth')
    state['0.weight'] = torch.zeros(5, 4)
    with pytest.raises(ArchitectureMismatchError, match='has shape'):
        check_checkpoint_fits(model(), ckpt(state, 'plugin-init'), 'i.pth')
