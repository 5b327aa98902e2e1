"""The confusion-matrix figure, its PNG file and the text report."""
import json

import numpy as np
import pytest
from PIL import Image

from dmue_mm.evaluation import (dump_metrics, format_report,
                                plot_confusion_matrix,
                                save_confusion_matrix_png)

CLASSES = ['angry', 'happy', 'neutral', 'sad']
CM = np.array([[4, 0, 0, 0], [1, 2, 0, 1], [0, 0, 1, 3], [2, 0, 0, 2]])


def panels(fig):
    """The count and the row-normalised axes, found by their titles."""
    by_title = {ax.get_title(): ax for ax in fig.axes}
    return by_title['Counts'], by_title['Row-normalised (%)']


class TestConfusionPng:

    def test_figure_has_class_names_and_both_panels(self):
        fig = plot_confusion_matrix(CM, CLASSES, title='val')
        counts, normalised = panels(fig)
        assert fig.get_suptitle() == 'val'
        for ax in (counts, normalised):
            assert [t.get_text() for t in ax.get_xticklabels()] == CLASSES
            assert [t.get_text() for t in ax.get_yticklabels()] == CLASSES
        count_texts = [t.get_text() for t in counts.texts]
        assert count_texts[:4] == ['4', '0', '0', '0']
        norm_texts = [t.get_text() for t in normalised.texts]
        # row "neutral": 1 of 4 right, 3 of 4 called sad
        assert norm_texts[8:12] == ['0.0', '0.0', '25.0', '75.0']

    def test_png_written_by_matplotlib(self, tmp_path):
        path = tmp_path / 'out' / 'cm.png'
        assert save_confusion_matrix_png(CM, CLASSES, str(path)) == str(path)
        assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
        with Image.open(path) as image:
            assert image.format == 'PNG'
            width, height = image.size
            assert 'Matplotlib' in image.info.get('Software', '')
        # two square panels side by side, 100 dpi, grows with the classes
        assert 700 <= width <= 1400 and 400 <= height <= 700
        assert width > height

    def test_empty_rows_give_zero_percentages(self, tmp_path):
        cm = np.array([[2, 0], [0, 0]])
        fig = plot_confusion_matrix(cm, ['a', 'b'])
        assert [t.get_text() for t in panels(fig)[1].texts
                ] == ['100.0', '0.0', '0.0', '0.0']

    def test_shape_mismatch(self):
        with pytest.raises(ValueError, match='2 class names'):
            plot_confusion_matrix(CM, ['a', 'b'])


class TestReportAndJson:

    def test_format_report(self):
        report = dict(
            top1=56.25,
            mean_class_acc=56.25,
            macro_precision=72.62,
            macro_f1=54.85,
            nll=1.05,
            ece=19.5,
            precision_classwise=[57.14, 100, 100, 33.33],
            recall_classwise=[100, 50, 25, 50],
            **{'f1-score_classwise': [72.73, 66.67, 40, 40]},
            support_classwise=[4, 4, 4, 4],
            confusion_matrix=CM)
        text = format_report(report, CLASSES)
        lines = text.splitlines()
        assert any(
            l.startswith('top-1 (%)') and l.endswith('56.25') for l in lines)
        assert 'temperature' not in text  # absent keys are skipped
        row = next(
            l for l in lines
            if l.startswith('neutral') and '%' not in l and '25.00' in l)
        assert row.split() == ['neutral', '100.00', '25.00', '40.00', '4']
        matrix_row = [l for l in lines if l.startswith('neutral')][-1]
        assert matrix_row.split() == ['neutral', '0', '0', '1', '3']

    def test_dump_metrics_json(self, tmp_path):
        path = tmp_path / 'a' / 'm.json'
        dump_metrics({
            'x/cm': CM,
            'x/top1': np.float64(50.0),
            'x/c': CLASSES
        }, str(path))
        data = json.loads(path.read_text())
        assert data == {'x/cm': CM.tolist(), 'x/top1': 50.0, 'x/c': CLASSES}


def test_dump_metrics_formats_from_suffix(tmp_path):
    """YAML and pickle as well as JSON, each readable in its format and
    written without temporary leftovers."""
    import mmengine
    metrics = {'top1': np.float64(87.5), 'cm': np.eye(2, dtype=np.int64)}
    for name in ('m.yaml', 'm.yml', 'm.pkl'):
        dump_metrics(metrics, str(tmp_path / name))
        assert mmengine.load(str(tmp_path / name)) == {
            'top1': 87.5,
            'cm': [[1, 0], [0, 1]]
        }
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        'm.pkl', 'm.yaml', 'm.yml'
    ]


def test_markdown_table():
    from dmue_mm.evaluation.report import format_markdown_table
    assert format_markdown_table(['a', 'b'], [['1', '2'], ['3', '4']]) == (
        '| a | b |\n|---|---|\n| 1 | 2 |\n| 3 | 4 |')
