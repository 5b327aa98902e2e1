"""Python inference API (``tools/infer.py`` is its command line).

Not imported by ``dmue_mm`` itself; import it explicitly::

    from dmue_mm.apis import ExpressionInferencer
"""
from .inferencer import (ExpressionInferencer, Prediction, collect_images,
                         predictions_table, write_predictions)

__all__ = [
    'ExpressionInferencer', 'Prediction', 'collect_images',
    'predictions_table', 'write_predictions'
]
