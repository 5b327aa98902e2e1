"""Video input of the inference API: frames sampled at a chosen rate, and
the timeline plot of the per-frame class probabilities.

Frames are read with OpenCV (``cv2.VideoCapture``, the codecs of the
installed ``opencv-python`` wheel); the plot uses matplotlib's object API
with the Agg canvas (no display, the global pyplot backend is untouched).
"""
import os.path as osp
from typing import Iterator, NamedTuple, Optional, Sequence

import numpy as np

from dmue_mm.utils.errors import DataError
from dmue_mm.utils.fileio import atomic_write

__all__ = [
    'VIDEO_EXTENSIONS', 'VideoFrame', 'VideoInfo', 'is_video', 'video_info',
    'sample_count', 'read_frames', 'plot_timeline', 'save_timeline_png'
]

VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mov', '.mkv', '.webm', '.m4v', '.mpg',
                    '.mpeg', '.wmv', '.flv', '.3gp')


class VideoFrame(NamedTuple):
    """One sampled frame.

    Attributes:
        index (int): Frame number in the video (from 0).
        time (float): Its time in seconds (``index / fps`` of the video).
        image (np.ndarray): (H, W, 3) uint8 RGB.
    """
    index: int
    time: float
    image: np.ndarray


class VideoInfo(NamedTuple):
    """What the container says about a video.

    Attributes:
        fps (float): Frames per second.
        frames (int): Frame count (an estimate for some containers).
        width (int): Frame width.
        height (int): Frame height.
    """
    fps: float
    frames: int
    width: int
    height: int


def is_video(path) -> bool:
    """Whether ``path`` names a video file (by its extension)."""
    return isinstance(path, str) and osp.splitext(
        path)[1].lower() in VIDEO_EXTENSIONS


def _open(path: str):
    import cv2
    if not osp.isfile(path):
        raise FileNotFoundError(f'video {path!r} not found: check the path')
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        cap.release()
        raise DataError(f'video {path!r} cannot be read: not a video, or '
                        'its codec is not in OpenCV; convert it, e.g. '
                        '"ffmpeg -i IN -c:v libx264 OUT.mp4"')
    return cap


def video_info(path: str) -> VideoInfo:
    """Frame rate, frame count and size of a video.

    Raises:
        FileNotFoundError: The file does not exist.
        DataError: OpenCV cannot open it.
    """
    import cv2
    cap = _open(path)
    try:
        return VideoInfo(float(cap.get(cv2.CAP_PROP_FPS) or 0.0),
                         int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0),
                         int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                         int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    finally:
        cap.release()


def sample_count(info: VideoInfo, fps: Optional[float]) -> int:
    """How many frames :func:`read_frames` keeps (for a progress bar)."""
    step = _step(info.fps, fps)
    return int(np.ceil(info.frames / step)) if info.frames else 0


def _step(video_fps: float, fps: Optional[float]) -> float:
    """Frames of the video per sampled frame (>= 1)."""
    if fps is not None and fps <= 0:
        raise DataError(f'--fps must be positive, got {fps}')
    if not fps or video_fps <= 0:
        return 1.0
    return max(1.0, video_fps / fps)


def read_frames(path: str,
                fps: Optional[float] = None) -> Iterator[VideoFrame]:
    """The frames of a video, sampled at about ``fps`` per second.

    Frame ``i`` is kept when ``floor(i / step)`` increases, with
    ``step = video fps / fps`` (at least 1): the first frame, then one per
    ``1 / fps`` seconds, always a real frame (no interpolation).

    Args:
        path (str): The video file.
        fps (float, optional): Sampling rate; None (or a rate above the
            video's) keeps every frame.

    Yields:
        VideoFrame: Index, time and RGB image of each kept frame.

    Raises:
        FileNotFoundError: The file does not exist.
        DataError: OpenCV cannot open it, or it has no readable frame.
    """
    import cv2
    cap = _open(path)
    try:
        video_fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        step = _step(video_fps, fps)
        index, last_bin = 0, -1
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            current = int(np.floor(index / step + 1e-9))
            if current > last_bin:
                last_bin = current
                time = index / video_fps if video_fps > 0 else float(index)
                yield VideoFrame(index, time,
                                 cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            index += 1
    finally:
        cap.release()
    if index == 0:
        raise DataError(f'video {path!r} has no readable frame: the file is '
                        'empty, truncated or its codec is not in OpenCV')


def plot_timeline(times: Sequence[float],
                  probabilities: np.ndarray,
                  classes: Sequence[str],
                  title: Optional[str] = None):
    """Class probabilities over time, one line per class.

    Args:
        times (Sequence[float]): (T,) frame times in seconds.
        probabilities (np.ndarray): (T, C) probabilities; a NaN row (a frame
            without prediction, e.g. no face) leaves a gap.
        classes (Sequence[str]): C class names (the legend).
        title (str, optional): Figure title.

    Returns:
        matplotlib.figure.Figure: A figure with an Agg canvas attached.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    probabilities = np.asarray(probabilities, np.float64)
    if probabilities.shape != (len(times), len(classes)):
        raise ValueError(f'probabilities must be ({len(times)}, '
                         f'{len(classes)}), got {probabilities.shape}')
    fig = Figure(figsize=(10, 4), dpi=100, layout='constrained')
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for column, name in enumerate(classes):
        ax.plot(times, probabilities[:, column], marker='.', label=name)
    ax.set_xlabel('time (s)')
    ax.set_ylabel('probability')
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc='upper left', bbox_to_anchor=(1.0, 1.0))
    if title:
        ax.set_title(title)
    return fig


def save_timeline_png(times: Sequence[float],
                      probabilities: np.ndarray,
                      classes: Sequence[str],
                      path: str,
                      title: Optional[str] = None) -> str:
    """Write :func:`plot_timeline` to a PNG file (atomically).

    Returns:
        str: ``path``.
    """
    fig = plot_timeline(times, probabilities, classes, title)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format='png'))
