"""The --cfg-options check and the shared tool helpers."""
import argparse
import importlib.util

import pytest
from mmengine.config import Config, DictAction

from dmue_mm.utils.cli import (add_common_args, check_cfg_options,
                               load_config, parse_with_local_rank,
                               set_dataloader_defaults, set_vis_backends,
                               set_work_dir)
from dmue_mm.utils.errors import CLIError


@pytest.fixture
def cfg():
    return Config(
        dict(
            model=dict(head=dict(type='LinearClsHead', num_classes=4)),
            train_dataloader=dict(batch_size=8, dataset=dict(data_root='x')),
            custom_hooks=[dict(type='A', interval=1)]))


@pytest.mark.parametrize('flag, trusted', [((), None),
                                           (('--trust-checkpoint', ), '1')])
def test_trust_checkpoint_flag(monkeypatch, flag, trusted):
    """``--trust-checkpoint`` is the opt-in that the safe loader reads."""
    import argparse
    import os
    monkeypatch.delenv('DMUE_TRUST_CHECKPOINT', raising=False)
    monkeypatch.delenv('LOCAL_RANK', raising=False)
    parser = argparse.ArgumentParser()
    add_common_args(parser)
    parse_with_local_rank(parser, list(flag))
    assert os.environ.get('DMUE_TRUST_CHECKPOINT') == trusted


class TestCheckCfgOptions:

    def test_existing_keys_pass(self, cfg):
        options = {'model.head.num_classes': 7, 'custom_hooks.0.interval': 3}
        assert check_cfg_options(cfg, options) == options

    def test_unknown_leaf_names_key_and_suggestion(self, cfg):
        with pytest.raises(CLIError) as err:
            check_cfg_options(cfg, {'model.head.num_clases': 7})
        message = str(err.value)
        assert "'model.head.num_clases'" in message
        assert "did you mean 'num_classes'" in message

    def test_unknown_parent(self, cfg):
        with pytest.raises(CLIError, match="no 'neck' under model"):
            check_cfg_options(cfg, {'model.neck.type': 'X'})

    def test_list_index_out_of_range(self, cfg):
        with pytest.raises(CLIError, match='list of 1 items'):
            check_cfg_options(cfg, {'custom_hooks.3.interval': 1})

    def test_plus_adds_new_leaf_only(self, cfg):
        assert check_cfg_options(cfg, {'+model.head.init_cfg': None}) == {
            'model.head.init_cfg': None
        }
        with pytest.raises(CLIError):
            check_cfg_options(cfg, {'+model.neck.type': 'X'})

    def test_into_scalar(self, cfg):
        with pytest.raises(CLIError, match='is a int'):
            check_cfg_options(cfg, {'train_dataloader.batch_size.x': 1})

    def test_unevaluated_dict_string_is_refused(self, cfg):
        # DictAction keeps "dict(...)" as a string: MMEngine's Visualizer
        # would fail with a TypeError traceback after the run started
        parser = argparse.ArgumentParser()
        parser.add_argument('--o', nargs='+', action=DictAction)
        options = parser.parse_args(
            ['--o', "custom_hooks=[dict(type='B')]"]).o
        with pytest.raises(CLIError, match=r'custom_hooks\.0\.type=NAME'):
            check_cfg_options(cfg, options)


class TestVisBackends:

    @pytest.fixture
    def vis_cfg(self):
        return Config(
            dict(
                visualizer=dict(
                    type='UniversalVisualizer',
                    vis_backends=[dict(type='LocalVisBackend')])))

    def test_tensorboard_added_once_next_to_local(self, vis_cfg):
        set_vis_backends(vis_cfg, ['tensorboard', 'tensorboard'])
        assert [b['type'] for b in vis_cfg.visualizer.vis_backends] == [
            'LocalVisBackend', 'TensorboardVisBackend'
        ]
        set_vis_backends(vis_cfg, ['tensorboard'])
        assert len(vis_cfg.visualizer.vis_backends) == 2

    def test_config_without_visualizer(self):
        cfg = Config(dict(model=dict()))
        set_vis_backends(cfg, [])
        assert 'visualizer' not in cfg
        set_vis_backends(cfg, ['tensorboard'])
        assert [b['type'] for b in cfg.visualizer.vis_backends] == [
            'mmengine.LocalVisBackend', 'TensorboardVisBackend'
        ]

    @pytest.mark.parametrize('names, option', [
        (['tensorboard'], None),
        ([], 'mmengine.TensorboardVisBackend'),
    ])
    def test_missing_package_one_line(self, vis_cfg, monkeypatch, names,
                                      option):
        real = importlib.util.find_spec
        monkeypatch.setattr(
            importlib.util, 'find_spec', lambda name, *a:
            None if name == 'tensorboard' else real(name, *a))
        if option:  # --cfg-options visualizer.vis_backends.0.type=...
            vis_cfg.visualizer.vis_backends[0].type = option
        with pytest.raises(CLIError, match='pip install tensorboard'):
            set_vis_backends(vis_cfg, names)


class TestHelpers:

    def test_missing_config(self, tmp_path):
        with pytest.raises(CLIError, match='nope.py'):
            load_config(str(tmp_path / 'nope.py'))

    def test_work_dir_priority(self, cfg):
        set_work_dir(cfg, 'configs/dmue/res18_rafdb.py', None)
        assert cfg.work_dir.endswith('work_dirs/res18_rafdb')
        set_work_dir(cfg, 'configs/dmue/res18_rafdb.py', '/tmp/w')
        assert cfg.work_dir == '/tmp/w'

    def test_dataloader_defaults_and_overrides(self, cfg):
        set_dataloader_defaults(
            cfg, ('train_dataloader', 'val_dataloader'),
            defaults=dict(pin_memory=True, persistent_workers=True),
            overrides=dict(pin_memory=False))
        loader = cfg.train_dataloader
        assert loader.batch_size == 8 and loader.pin_memory is False
        # no workers: persistent workers would make the DataLoader raise
        assert loader.persistent_workers is False
        assert loader.collate_fn == dict(type='default_collate')
        assert 'val_dataloader' not in cfg


class TestCliEntryProcessGroup:
    """A tool's ``main`` leaves no process group behind for the interpreter's
    teardown (a finished gloo run otherwise aborts with SIGABRT at times)."""

    @pytest.fixture
    def group(self, tmp_path):
        import torch.distributed as dist
        dist.init_process_group(
            'gloo',
            init_method=f'file://{tmp_path / "store"}',
            rank=0,
            world_size=1)
        yield dist
        if dist.is_initialized():
            dist.destroy_process_group()

    def test_destroyed_after_success(self, group):
        from dmue_mm.utils.cli import cli_entry

        @cli_entry
        def main():
            assert group.is_initialized()
            return 'done'

        assert main() == 'done'
        assert not group.is_initialized()

    def test_destroyed_after_a_user_error(self, group, capsys):
        from dmue_mm.utils.cli import cli_entry

        @cli_entry
        def main():
            raise CLIError('bad option')

        with pytest.raises(SystemExit) as exit_info:
            main()
        assert exit_info.value.code == 2
        assert 'error: bad option' in capsys.readouterr().err
        assert not group.is_initialized()
