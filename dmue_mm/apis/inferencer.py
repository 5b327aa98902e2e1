"""Expression probabilities for people: images or folders in, class
probabilities with class names out.

A thin wrapper over MMPretrain's ``ImageClassificationInferencer`` on a
deploy config + checkpoint (see ``docs/deploy.md``), with optional face
alignment (:func:`dmue_mm.alignment.align_face`) and a progress bar.
"""
import csv
import io
import os.path as osp
from contextlib import redirect_stdout
from dataclasses import asdict, dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Union

import numpy as np

from dmue_mm.utils.errors import DataError
from dmue_mm.utils.fileio import atomic_write, write_json

__all__ = [
    'Prediction', 'ExpressionInferencer', 'collect_images',
    'predictions_table', 'write_predictions'
]

ImageInput = Union[str, np.ndarray]


@dataclass
class Prediction:
    """The result for one image.

    Attributes:
        image (str): The file (or ``array_<i>`` for an in-memory image).
        scores (dict): Class name -> probability (empty on error).
        pred_label (int, optional): Most probable class index.
        pred_class (str, optional): Its name.
        pred_score (float, optional): Its probability.
        error (str, optional): Why there is no prediction (unreadable
            image, no face found with ``align``).
    """
    image: str
    scores: Dict[str, float] = field(default_factory=dict)
    pred_label: Optional[int] = None
    pred_class: Optional[str] = None
    pred_score: Optional[float] = None
    error: Optional[str] = None

    def to_dict(self) -> dict:
        """Plain dict (JSON-ready)."""
        return asdict(self)


def collect_images(
        inputs: Union[ImageInput, Sequence[ImageInput]]) -> List[ImageInput]:
    """Expand folders (recursively, sorted) into their image files; files
    and arrays are kept in order.

    Raises:
        FileNotFoundError: A path that is neither a file nor a folder.
        DataError: A folder without images.
    """
    from dmue_mm.alignment.sources import list_folder
    if isinstance(inputs, (str, np.ndarray)):
        inputs = [inputs]
    out: List[ImageInput] = []
    for item in inputs:
        if isinstance(item, np.ndarray):
            out.append(item)
        elif osp.isdir(item):
            records = list_folder(item, 'flat').records
            if not records:
                raise DataError(f'folder {item!r} contains no image')
            out.extend(r.path for r in records)
        elif osp.isfile(item):
            out.append(item)
        else:
            raise FileNotFoundError(f'input {item!r} not found: give image '
                                    'files or folders')
    return out


class ExpressionInferencer:
    """Facial-expression inference with a deploy model.

    Args:
        config (str): Deploy config (written by ``BranchPruningHook`` or
            ``tools/convert.py``).
        checkpoint (str): Deploy checkpoint.
        device (str): ``'cpu'``, ``'cuda'``, ... Defaults to ``'cpu'``.
        align (bool): Detect and align the largest face first (MTCNN, DMUE
            framing); images without a face get an error entry. Defaults to
            False (inputs are already aligned crops, as the original's
            ``inference.py`` assumes).
        align_mode (str): ``'align'`` (5-point template) or ``'crop'``.
        classes (Sequence[str], optional): Overrides the checkpoint's class
            names; as many as the model has classes.

    Example:
        >>> from dmue_mm.apis import ExpressionInferencer
        >>> infer = ExpressionInferencer('deploy/deploy.py',
        ...                              'deploy/last.pth', align=True)
        >>> pred = infer('photo.jpg')[0]
        >>> pred.pred_class, pred.scores
    """

    def __init__(self,
                 config: str,
                 checkpoint: str,
                 device: str = 'cpu',
                 align: bool = False,
                 align_mode: str = 'align',
                 classes: Optional[Sequence[str]] = None):
        from mmpretrain.apis import ImageClassificationInferencer
        for path, what in ((config, 'config'), (checkpoint, 'checkpoint')):
            if not osp.isfile(path):
                raise FileNotFoundError(f'{what} {path!r} not found: check '
                                        'the path')
        # MMEngine print()s "Loads checkpoint by ...": keep stdout for results
        with redirect_stdout(io.StringIO()):
            self.inferencer = ImageClassificationInferencer(
                model=config,
                pretrained=checkpoint,
                device=device,
                classes=classes)
        from dmue_mm.datasets import check_class_names
        num_classes = self.inferencer.model.head.num_classes
        names = self.inferencer.classes
        check_class_names(
            num_classes, names, 'the given classes'
            if classes is not None else f'checkpoint {checkpoint!r}')
        self.classes = (
            list(names) if names is not None else
            [f'class_{i}' for i in range(num_classes)])
        self.device = device
        self.align = align
        self.align_mode = align_mode
        self._detector = None

    def __call__(self,
                 inputs: Union[ImageInput, Sequence[ImageInput]],
                 batch_size: int = 8,
                 progress: bool = False) -> List[Prediction]:
        """Predict the expression of every image.

        Args:
            inputs: An image file, a folder (all its images, recursively),
                an RGB uint8 array, or a list of them.
            batch_size (int): Images per forward pass.
            progress (bool): Show a progress bar.

        Returns:
            list[Prediction]: One per image, in input order.
        """
        from tqdm import tqdm
        images = collect_images(inputs)
        results: List[Prediction] = []
        with tqdm(
                total=len(images), unit='img', disable=not progress,
                desc='infer') as bar:
            for start in range(0, len(images), batch_size):
                chunk = images[start:start + batch_size]
                results.extend(self._predict_chunk(chunk, start))
                bar.update(len(chunk))
        return results

    def _predict_chunk(self, chunk: List[ImageInput],
                       offset: int) -> List[Prediction]:
        preds, ready, arrays = [], [], []
        for i, item in enumerate(chunk):
            name = item if isinstance(item, str) else f'array_{offset + i}'
            pred = Prediction(image=name)
            try:
                arrays.append(self._prepare(item))
                ready.append(pred)
            except DataError as exc:
                pred.error = str(exc)
            preds.append(pred)
        if arrays:
            outputs = self._infer(arrays)
            for pred, out in zip(ready, outputs):
                scores = np.asarray(out['pred_scores'], dtype=np.float64)
                label = int(scores.argmax())
                pred.scores = {
                    name: float(p)
                    for name, p in zip(self.classes, scores)
                }
                pred.pred_label = label
                pred.pred_class = self.classes[label]
                pred.pred_score = float(scores[label])
        return preds

    def _infer(self, arrays: List[np.ndarray]) -> List[dict]:
        """The inferencer's steps without its own progress bar."""
        samples = []
        for batch in self.inferencer.preprocess(
                arrays, batch_size=len(arrays)):
            samples.extend(self.inferencer.forward(batch))
        return self.inferencer.postprocess(samples, None)

    def _prepare(self, item: ImageInput) -> np.ndarray:
        """RGB image (aligned if asked) -> BGR array, as MMPretrain's
        ``LoadImageFromFile`` gives."""
        from dmue_mm.alignment.imageio import ImageReadError, load_rgb
        if isinstance(item, np.ndarray):
            rgb = np.asarray(item)
        else:
            try:
                rgb = load_rgb(item)
            except ImageReadError as exc:
                raise DataError(f'unreadable image: {exc}') from exc
        if self.align:
            rgb = self._align(rgb)
        return np.ascontiguousarray(rgb[..., ::-1])

    def _align(self, rgb: np.ndarray) -> np.ndarray:
        from dmue_mm.alignment import FaceDetector, align_face
        if self._detector is None:
            self._detector = FaceDetector(device=self.device)
        faces = align_face(rgb, self._detector, mode=self.align_mode)
        if not faces:
            raise DataError('no face found')
        return faces[0].image


def predictions_table(predictions: Iterable[Prediction],
                      classes: Sequence[str]) -> str:
    """A text table: image, predicted class, its probability and every
    class probability."""
    from dmue_mm.evaluation import format_table
    rows = []
    for pred in predictions:
        if pred.error:
            rows.append([pred.image, f'({pred.error})', ''] +
                        [''] * len(classes))
            continue
        rows.append([pred.image, pred.pred_class, f'{pred.pred_score:.3f}'] +
                    [f'{pred.scores[c]:.3f}' for c in classes])
    return format_table(['image', 'class', 'p'] + list(classes), rows)


def write_predictions(predictions: Sequence[Prediction],
                      classes: Sequence[str], path: str) -> str:
    """Write predictions as JSON (a list of :meth:`Prediction.to_dict`) or
    CSV (one column per class probability), by the file suffix.

    Returns:
        str: ``path``.
    """
    suffix = osp.splitext(path)[1].lower()
    if suffix not in ('.json', '.csv'):
        raise DataError(f'--out {path!r}: use a .json or .csv file')
    if suffix == '.json':
        return write_json(path, [p.to_dict() for p in predictions])

    def write_csv(tmp: str) -> None:
        with open(tmp, 'w', newline='', encoding='utf-8') as f:
            writer = csv.writer(f)
            writer.writerow(['image', 'pred_label', 'pred_class', 'pred_score']
                            + list(classes) + ['error'])
            for p in predictions:
                writer.writerow(
                    [p.image, p.pred_label, p.pred_class, p.pred_score] +
                    [p.scores.get(c, '') for c in classes] + [p.error or ''])

    return atomic_write(path, write_csv)
