"""Video input: frame sampling, per-frame predictions with alignment, the
timeline PNG and the errors for missing or unreadable videos."""
import numpy as np
import pytest
from PIL import Image

from dmue_mm.apis import (ExpressionInferencer, FramePrediction, read_frames,
                          save_video_timeline, video_info, write_predictions)
from dmue_mm.utils.errors import DataError
from dmue_testing import write_test_video
from test_converters.deploy_helpers import folder_deploy


@pytest.fixture(scope='module')
def video(tmp_path_factory):
    path = str(tmp_path_factory.mktemp('video') / 'clip.avi')
    return path, write_test_video(path)


@pytest.fixture(scope='module')
def inferencer(tmp_path_factory):
    files = folder_deploy(str(tmp_path_factory.mktemp('deploy')))
    return ExpressionInferencer(files.config, files.checkpoint, align=True)


class TestReadFrames:

    def test_sampling(self, video):
        path, shown = video
        assert video_info(path)[:2] == (10.0, 25)
        every = list(read_frames(path))
        assert [f.index for f in every] == list(range(25))
        assert every[0].image.shape == (224, 200, 3)
        # 2.5 fps of a 10 fps video: every 4th frame, at its own time
        sampled = list(read_frames(path, fps=2.5))
        assert [f.index for f in sampled] == [0, 4, 8, 12, 16, 20, 24]
        assert [f.time for f in sampled] == pytest.approx(
            [0, 0.4, 0.8, 1.2, 1.6, 2.0, 2.4])
        # a non-integer step keeps one frame per 1/fps seconds
        assert [f.index for f in read_frames(path, fps=3)] == [
            0, 4, 7, 10, 14, 17, 20, 24
        ]
        # a rate above the video's keeps every frame, and the frames are
        # the decoded images (the MJPG blank frame stays grey)
        assert len(list(read_frames(path, fps=50))) == 25
        blank = every[shown.index('blank')].image.astype(int)
        assert np.abs(blank - 128).max() <= 3
        with pytest.raises(DataError, match='--fps must be positive'):
            list(read_frames(path, fps=0))

    def test_missing_and_unreadable(self, tmp_path):
        with pytest.raises(FileNotFoundError, match='not found'):
            list(read_frames(str(tmp_path / 'none.mp4')))
        bad = tmp_path / 'bad.avi'
        bad.write_bytes(b'not a video at all' * 100)
        with pytest.raises(DataError, match='bad.avi'):
            list(read_frames(str(bad)))


class TestPredictVideo:

    def test_frames_aligned_predicted_and_plotted(self, inferencer, video,
                                                  tmp_path):
        path, shown = video
        preds = inferencer.predict_video(path, fps=2.5, batch_size=3)
        assert all(isinstance(p, FramePrediction) for p in preds)
        assert [p.frame for p in preds] == [0, 4, 8, 12, 16, 20, 24]
        assert preds[1].image == f'{path}#frame=4'
        assert preds[2].time == pytest.approx(0.8)
        for pred in preds:
            if shown[pred.frame] == 'blank':
                assert pred.error == 'no face found' and not pred.scores
            else:
                assert pred.error is None
                assert sum(pred.scores.values()) == pytest.approx(1.0)
        # the same as the frames given as images (batched MTCNN and model
        # agree with the image path to float32 rounding)
        frames = [f.image for f in read_frames(path, fps=2.5)]
        single = inferencer(frames, batch_size=1)
        for a, b in zip(preds, single):
            assert a.error == b.error
            for name in inferencer.classes:
                assert a.scores.get(name, 0) == pytest.approx(
                    b.scores.get(name, 0), abs=1e-5)
        # per-frame CSV and the timeline
        write_predictions(preds, inferencer.classes, str(tmp_path / 'v.csv'))
        header = (tmp_path / 'v.csv').read_text().splitlines()[0]
        assert header.startswith('image,frame,time,pred_label')
        png = save_video_timeline(preds, inferencer.classes,
                                  str(tmp_path / 'timeline.png'), 'clip')
        with Image.open(png) as img:
            assert img.format == 'PNG' and img.size == (1000, 400)
            pixels = np.asarray(img.convert('RGB'))
        assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 10

    def test_an_image_call_refuses_a_video(self, inferencer, video):
        with pytest.raises(DataError, match='is a video: use predict_video'):
            inferencer(video[0])
