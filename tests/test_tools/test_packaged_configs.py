"""The recipes ship inside the package: a config anywhere inherits
``'dmue_mm::dmue/res18_rafdb.py'``, from the editable install (the
repository) and from a normal install (a built wheel)."""
import glob
import os.path as osp
import shutil
import sys
import zipfile

import pytest
import torch
from conftest import CONFIGS, ROOT, TOOLS, run_tool

from dmue_mm.utils import write_image_folder

CLASSES = ('anger', 'disgust', 'fear', 'happy', 'neutral', 'sad',
           'surprise')
# A user's config: the RAF-DB recipe on a generated image folder, a narrow
# backbone from scratch, one epoch, every batch used (tiny batches).
USER_CONFIG = '''_base_ = 'dmue_mm::dmue/res18_rafdb.py'
data_root = {root!r}
pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
train_dataloader = dict(
    num_workers=0, persistent_workers=False,
    dataset=dict(_delete_=True, type='CustomDataset', data_root=data_root,
                 data_prefix='train', pipeline=pipeline))
val_dataloader = dict(
    num_workers=0, persistent_workers=False,
    dataset=dict(_delete_=True, type='CustomDataset', data_root=data_root,
                 data_prefix='val', pipeline=pipeline))
test_dataloader = val_dataloader
total_batch_size = 14
model = dict(backbone=dict(base_channels=8, stem_channels=8,
                           init_cfg=dict(checkpoint=None)))
train_cfg = dict(max_epochs=1, skip_batches=False)
'''


def write_user_config(folder) -> str:
    root = str(folder / 'data')
    write_image_folder(root, CLASSES, {'train': 4, 'val': 2}, size=32)
    path = folder / 'my_rafdb.py'
    path.write_text(USER_CONFIG.format(root=root))
    return str(path)


def test_config_in_a_tmp_folder_trains_one_epoch(tmp_path):
    config = write_user_config(tmp_path)
    run_tool([osp.join(TOOLS, 'train.py'), config, '--work-dir', 'work'],
             cwd=str(tmp_path), timeout=300, env={'OMP_NUM_THREADS': '1'})
    ckpt = torch.load(tmp_path / 'work' / 'epoch_1.pth', weights_only=False)
    assert ckpt['meta']['epoch'] == 1
    assert (tmp_path / 'work' / 'deploy' / 'last.pth').is_file()


def test_normal_install_ships_the_configs(tmp_path):
    # build from a clean copy: an in-tree build/ would keep stale files
    source = tmp_path / 'source'
    shutil.copytree(
        ROOT, source, symlinks=True,
        ignore=shutil.ignore_patterns('.git', 'build', '*.egg-info', '.venv',
                                      'work_dirs', 'data', '__pycache__'))
    run_tool([sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps',
              '--no-build-isolation', '-w', str(tmp_path / 'wheel'),
              str(source)], timeout=300)
    (wheel, ) = glob.glob(str(tmp_path / 'wheel' / '*.whl'))
    shipped = {
        name[len('dmue_mm/.mim/configs/'):]
        for name in zipfile.ZipFile(wheel).namelist()
        if name.startswith('dmue_mm/.mim/configs/')
    }
    repo = {
        osp.relpath(p, CONFIGS)
        for p in glob.glob(osp.join(CONFIGS, '**', '*.py'), recursive=True)
    }
    assert shipped == repo
    target = tmp_path / 'site'
    run_tool([sys.executable, '-m', 'pip', 'install', '-q', '--no-deps',
              '--target', str(target), wheel], timeout=300)
    config = tmp_path / 'mine.py'
    config.write_text("_base_ = 'dmue_mm::dmue/r50ibn_sfew.py'\n"
                      'model = dict(head=dict(loss=dict(ramp_a=9)))\n')
    script = ('import sys, dmue_mm\n'
              'from mmengine.config import Config\n'
              f'assert dmue_mm.__file__.startswith({str(target)!r})\n'
              'cfg = Config.fromfile(sys.argv[1])\n'
              'print(cfg.model.backbone.type, cfg.model.head.num_classes, '
              'cfg.model.head.loss.ramp_a, cfg.train_cfg.type)\n')
    result = run_tool([sys.executable, '-c', script, str(config)],
                      cwd=str(tmp_path),
                      env={'PYTHONPATH': str(target)})
    assert result.stdout.split() == ['ResNetIBN', '7', '9', 'DMUETrainLoop']


def test_unknown_packaged_config_is_named(tmp_path):
    from mmengine.config import Config
    config = tmp_path / 'bad.py'
    config.write_text("_base_ = 'dmue_mm::dmue/res18_nope.py'\n")
    with pytest.raises(FileNotFoundError,
                       match="'dmue_mm::dmue/res18_nope.py'.*is not a "
                       'config of the installed dmue_mm'):
        Config.fromfile(str(config))
