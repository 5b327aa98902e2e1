"""``tools/test.py --show-dir`` with one picture per test image."""
import os.path as osp
from typing import Optional, Sequence

from mmpretrain.engine.hooks import VisualizationHook
from mmpretrain.registry import HOOKS
from mmpretrain.structures import DataSample

__all__ = ['ExpressionVisualizationHook', 'unique_sample_name']


def unique_sample_name(sample: DataSample) -> Optional[str]:
    """A picture name that no other sample of the dataset shares.

    MMPretrain names a picture after the basename of ``img_path``, which
    repeats across class folders (``test/angry/000.png`` and
    ``test/happy/000.png``, in an LMDB or an image folder). The dataset
    index ``sample_idx`` makes the name unique; the class folder and the
    basename keep it readable: ``000012_angry_000.png``.

    Returns:
        str, optional: The name, or None when the sample has no
        ``img_path`` or ``sample_idx`` (MMPretrain's own naming applies).
    """
    path, index = sample.get('img_path'), sample.get('sample_idx')
    if path is None or index is None:
        return None
    parent, base = osp.split(osp.normpath(str(path)))
    folder = osp.basename(parent)
    return f'{int(index):06d}_{folder}_{base}' if folder else \
        f'{int(index):06d}_{base}'


@HOOKS.register_module()
class ExpressionVisualizationHook(VisualizationHook):
    """MMPretrain's ``VisualizationHook`` with :func:`unique_sample_name`
    file names, so that ``--show-dir`` keeps one picture per image.

    Args:
        **kwargs: See MMPretrain's ``VisualizationHook``.
    """

    def _draw_samples(self,
                      batch_idx: int,
                      data_batch: dict,
                      data_samples: Sequence[DataSample],
                      step: int = 0) -> None:
        """Draw with unique names; ``img_path`` is restored afterwards."""
        renamed = []
        for sample in data_samples:
            name = unique_sample_name(sample)
            if name is not None:
                renamed.append((sample, sample.img_path))
                sample.set_metainfo(dict(img_path=name))
        try:
            super()._draw_samples(batch_idx, data_batch, data_samples, step)
        finally:
            for sample, path in renamed:
                sample.set_metainfo(dict(img_path=path))
