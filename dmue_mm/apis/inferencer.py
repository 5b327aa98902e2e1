"""Expression probabilities for people: images, folders or videos in,
class probabilities with class names out.

A thin wrapper over MMPretrain's ``ImageClassificationInferencer`` on a
deploy config + checkpoint (see ``docs/deploy.md``), with optional face
alignment (:class:`dmue_mm.alignment.FaceAligner`, batched MTCNN), a
progress bar, and for videos frames sampled at a chosen rate and a timeline
plot (:mod:`.video`).
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

from .video import (is_video, read_frames, sample_count, save_timeline_png,
                    video_info)

__all__ = [
    'Prediction', 'FramePrediction', 'ExpressionInferencer',
    'collect_images', 'predictions_table', 'write_predictions',
    'save_video_timeline'
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


@dataclass
class FramePrediction(Prediction):
    """The result for one video frame (``image`` is ``<video>#frame=<i>``).

    Attributes:
        frame (int): Frame number in the video (from 0).
        time (float): Its time in seconds.
    """
    frame: int = 0
    time: float = 0.0


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
        elif is_video(item):
            raise DataError(f'{item!r} is a video: use predict_video (or '
                            'tools/infer.py with the video as the only '
                            'input)')
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
        self._aligner = None

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
                preds = [
                    Prediction(image=item if isinstance(item, str) else
                               f'array_{start + i}')
                    for i, item in enumerate(chunk)
                ]
                self._predict_chunk(chunk, preds)
                results.extend(preds)
                bar.update(len(chunk))
        return results

    def predict_video(self,
                      path: str,
                      fps: Optional[float] = None,
                      batch_size: int = 8,
                      progress: bool = False) -> List[FramePrediction]:
        """Predict the expression of a video's frames.

        Args:
            path (str): The video file (any container/codec OpenCV reads).
            fps (float, optional): Frames per second to sample (see
                :func:`~.video.read_frames`); None keeps every frame.
            batch_size (int): Frames per forward (and MTCNN) pass.
            progress (bool): Show a progress bar.

        Returns:
            list[FramePrediction]: One per sampled frame, in time order;
            with ``align``, a frame without a face has ``error`` set.

        Raises:
            FileNotFoundError: The video does not exist.
            DataError: OpenCV cannot read it.
        """
        from tqdm import tqdm
        total = sample_count(video_info(path), fps)
        results: List[FramePrediction] = []
        chunk: list = []

        def flush() -> None:
            preds = [
                FramePrediction(image=f'{path}#frame={f.index}',
                                frame=f.index,
                                time=f.time) for f in chunk
            ]
            self._predict_chunk([f.image for f in chunk], preds)
            results.extend(preds)
            bar.update(len(chunk))
            chunk.clear()

        with tqdm(total=total or None,
                  unit='frame',
                  disable=not progress,
                  desc='video') as bar:
            for frame in read_frames(path, fps):
                chunk.append(frame)
                if len(chunk) == batch_size:
                    flush()
            if chunk:
                flush()
        return results

    def _predict_chunk(self, chunk: List[ImageInput],
                       preds: List[Prediction]) -> None:
        """Fill ``preds`` (one per item) with scores or errors."""
        ready, arrays = [], []
        for item, pred in zip(chunk, preds):
            try:
                arrays.append(self._load(item))
                ready.append(pred)
            except DataError as exc:
                pred.error = str(exc)
        if self.align and arrays:
            faces = self._align(arrays)
            for pred, face in zip(ready, faces):
                if isinstance(face, str):
                    pred.error = face
            found = [i for i, face in enumerate(faces)
                     if not isinstance(face, str)]
            ready = [ready[i] for i in found]
            arrays = [faces[i] for i in found]
        arrays = [np.ascontiguousarray(a[..., ::-1]) for a in arrays]
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

    def _infer(self, arrays: List[np.ndarray]) -> List[dict]:
        """The inferencer's steps without its own progress bar."""
        samples = []
        for batch in self.inferencer.preprocess(
                arrays, batch_size=len(arrays)):
            samples.extend(self.inferencer.forward(batch))
        return self.inferencer.postprocess(samples, None)

    @staticmethod
    def _load(item: ImageInput) -> np.ndarray:
        """An (H, W, 3) uint8 RGB image from a file or an array."""
        from dmue_mm.alignment.imageio import ImageReadError, load_rgb
        if isinstance(item, np.ndarray):
            return np.asarray(item)
        try:
            return load_rgb(item)
        except ImageReadError as exc:
            raise DataError(f'unreadable image: {exc}') from exc

    def _align(self, images: List[np.ndarray]) -> list:
        """The largest face of every image, aligned (MTCNN batched over
        images of one size, e.g. the frames of a video), or the reason
        (a str) where there is none."""
        from dmue_mm.alignment import FaceAligner, FaceDetector
        if self._aligner is None or self._aligner.mode != self.align_mode:
            self._aligner = FaceAligner(FaceDetector(device=self.device),
                                        mode=self.align_mode)
        return [
            result.error if result.error else result.faces[0].image
            for result in self._aligner.align_batch(images)
        ]


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
    CSV (one column per class probability), by the file suffix. Video
    frames (:class:`FramePrediction`) get ``frame`` and ``time`` columns.

    Returns:
        str: ``path``.
    """
    suffix = osp.splitext(path)[1].lower()
    if suffix not in ('.json', '.csv'):
        raise DataError(f'--out {path!r}: use a .json or .csv file')
    if suffix == '.json':
        return write_json(path, [p.to_dict() for p in predictions])

    frames = bool(predictions) and all(
        isinstance(p, FramePrediction) for p in predictions)
    where = ['frame', 'time'] if frames else []

    def write_csv(tmp: str) -> None:
        with open(tmp, 'w', newline='', encoding='utf-8') as f:
            writer = csv.writer(f)
            writer.writerow(['image'] + where +
                            ['pred_label', 'pred_class', 'pred_score'] +
                            list(classes) + ['error'])
            for p in predictions:
                writer.writerow([p.image] + [getattr(p, k) for k in where] +
                                [p.pred_label, p.pred_class, p.pred_score] +
                                [p.scores.get(c, '') for c in classes] +
                                [p.error or ''])

    return atomic_write(path, write_csv)


def save_video_timeline(predictions: Sequence[FramePrediction],
                        classes: Sequence[str],
                        path: str,
                        title: Optional[str] = None) -> str:
    """The PNG timeline of a video's per-frame class probabilities (frames
    without prediction are gaps).

    Returns:
        str: ``path``.
    """
    probs = np.array([[p.scores.get(c, np.nan) for c in classes]
                      for p in predictions],
                     dtype=np.float64).reshape(len(predictions), len(classes))
    return save_timeline_png([p.time for p in predictions], probs, classes,
                             path, title)
