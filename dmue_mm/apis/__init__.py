"""Python inference API (``tools/infer.py`` is its command line).

Not imported by ``dmue_mm`` itself; import it explicitly::

    from dmue_mm.apis import ExpressionInferencer
"""
from .inferencer import (ExpressionInferencer, FramePrediction, Prediction,
                         collect_images, predictions_table,
                         save_video_timeline, write_predictions)
from .video import (VIDEO_EXTENSIONS, VideoFrame, VideoInfo, is_video,
                    plot_timeline, read_frames, save_timeline_png,
                    video_info)

__all__ = [
    'ExpressionInferencer', 'FramePrediction', 'Prediction',
    'collect_images', 'predictions_table', 'save_video_timeline',
    'write_predictions', 'VIDEO_EXTENSIONS', 'VideoFrame', 'VideoInfo',
    'is_video', 'plot_timeline', 'read_frames', 'save_timeline_png',
    'video_info'
]
