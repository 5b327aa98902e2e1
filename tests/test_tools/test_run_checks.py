"""The runner tools check before any work: the head's class
count against the data (train.py, test.py, infer.py) and the shape of the
checkpoint they load (test.py, load_from, --resume). In process: each fails
in one line with exit status 2."""
import os.path as osp

import pytest

from conftest import (BASELINE_CFG, CLASSES, CONFIGS, TOOLS,
                      data_root_options, load_script)
from dmue_testing import save_untrained_checkpoint
from test_datasets.fakes import write_lmdb

TRAIN = osp.join(TOOLS, 'train.py')
TEST = osp.join(TOOLS, 'test.py')
INFER = osp.join(TOOLS, 'infer.py')
# the baseline's ResNet-18: 512-d features, head.fc.weight is (K, 512)
FC_SHAPE = "key 'head.fc.weight' has shape (7, 512), the model expects " \
    f'({len(CLASSES)}, 512)'


def one_line_error(tool, argv, capsys) -> str:
    """Run a tool's main in process; it must exit 2 with one error line."""
    with pytest.raises(SystemExit) as exc:
        load_script(tool, osp.splitext(osp.basename(tool))[0]).main(
            [str(a) for a in argv])
    assert exc.value.code == 2
    lines = [
        line for line in capsys.readouterr().err.splitlines()
        if line.startswith('error:')
    ]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture(scope='module')
def k7_checkpoint(tmp_path_factory):
    """A 7-class baseline checkpoint (the baseline config has 4)."""
    path = tmp_path_factory.mktemp('k7') / 'k7.pth'
    return save_untrained_checkpoint(BASELINE_CFG, str(path), 7)


class TestClassCount:

    def test_train_config_with_its_own_classes(self, image_folder, tmp_path,
                                               capsys):
        """A config that inherits a recipe and names 5 classes, but not
        model.head.num_classes: refused before the Runner starts."""
        config = tmp_path / 'five.py'
        config.write_text(
            f"_base_ = [{osp.join(CONFIGS, 'dmue', 'res18_generated.py')!r}]"
            "\ntrain_dataloader = dict(dataset=dict(classes="
            "['a', 'b', 'c', 'd', 'e']))\n")
        work_dir = tmp_path / 'work'
        line = one_line_error(TRAIN, [
            config, '--work-dir', work_dir, '--cfg-options',
            *data_root_options(image_folder)
        ], capsys)
        assert line.startswith('error: model.head.num_classes is 7 but '
                               'train_dataloader.dataset has 5 classes')
        assert 'model.head.num_classes=5' in line
        assert not work_dir.exists()  # no work started

    def test_test_on_an_lmdb_with_more_classes(self, tmp_path, capsys):
        lmdb = str(tmp_path / 'eight.lmdb')
        write_lmdb(lmdb, classes=tuple(f'c{i}' for i in range(8)),
                   splits={'test': 1})
        ckpt = tmp_path / 'k4.pth'
        ckpt.write_bytes(b'')  # never read: the check comes first
        line = one_line_error(TEST, [
            BASELINE_CFG, ckpt, '--work-dir', tmp_path, '--cfg-options',
            'test_dataloader.dataset.type=ExpressionLMDBDataset',
            f'test_dataloader.dataset.data_root={lmdb}'
        ], capsys)
        assert line.startswith(
            f'error: model.head.num_classes is {len(CLASSES)} but '
            'test_dataloader.dataset has 8 classes (the metadata of LMDB')

    def test_infer_with_other_class_names(self, tmp_path, capsys):
        from test_converters.deploy_helpers import folder_deploy
        files = folder_deploy(str(tmp_path / 'deploy'))
        line = one_line_error(INFER, [
            files.config, files.checkpoint, tmp_path, '--classes', 'a,b'
        ], capsys)
        assert line.startswith(f'error: the model has {len(CLASSES)} '
                               'classes but the given classes names 2')


class TestCheckpointShape:

    def test_test_tool(self, k7_checkpoint, image_folder, tmp_path, capsys):
        """Was: exit 0 with chance accuracy after MMEngine's warning."""
        line = one_line_error(TEST, [
            BASELINE_CFG, k7_checkpoint, '--work-dir', tmp_path,
            '--cfg-options',
            *data_root_options(image_folder, ('test_dataloader', ))
        ], capsys)
        assert f"checkpoint '{k7_checkpoint}' does not fit" in line
        assert FC_SHAPE in line

    @pytest.mark.parametrize('how', ['load_from', 'resume'])
    def test_load_from_and_resume(self, k7_checkpoint, image_folder,
                                  tmp_path, capsys, how):
        extra = (['--resume', k7_checkpoint] if how == 'resume' else [])
        options = ([f'load_from={k7_checkpoint}']
                   if how == 'load_from' else [])
        line = one_line_error(TRAIN, [
            BASELINE_CFG, '--work-dir', tmp_path, '--no-validate', *extra,
            '--cfg-options', *options,
            *data_root_options(image_folder, ('train_dataloader', ))
        ], capsys)
        assert FC_SHAPE in line
        assert not list(tmp_path.glob('epoch_*.pth'))
