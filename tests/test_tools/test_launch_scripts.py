"""The shell launchers: usage without arguments, and the srun command of
the Slurm scripts (with a fake ``srun`` on PATH)."""
import os
import os.path as osp
import stat

import pytest

from conftest import TOOLS, run_tool

SCRIPTS = ('dist_train.sh', 'dist_test.sh', 'dist_launch.sh',
           'slurm_train.sh', 'slurm_test.sh', 'slurm_launch.sh')


@pytest.mark.parametrize('script', SCRIPTS)
def test_syntax_and_usage(script):
    path = osp.join(TOOLS, script)
    run_tool(['bash', '-n', path], timeout=30)
    result = run_tool([path], timeout=30, check=False)
    assert result.returncode == 2
    assert result.stderr.startswith(f'usage: {path} ')
    assert 'unbound variable' not in result.stderr


def test_dist_launch_refuses_a_bad_process_count():
    result = run_tool(
        [osp.join(TOOLS, 'dist_train.sh'), 'cfg.py', 'four'],
        timeout=30,
        check=False)
    assert result.returncode == 2
    assert "positive integer, got 'four'" in result.stderr


@pytest.fixture
def fake_srun(tmp_path):
    """A ``srun`` that writes its arguments, one per line, to a file."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    log = tmp_path / 'srun_args.txt'
    srun = bin_dir / 'srun'
    srun.write_text('#!/usr/bin/env bash\n'
                    f'printf "%s\\n" "$@" > {log}\n')
    srun.chmod(srun.stat().st_mode | stat.S_IEXEC)
    env = dict(PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}', GPUS='4',
               GPUS_PER_NODE='2', SRUN_ARGS='--quotatype=auto --qos=x')
    return env, log


@pytest.mark.parametrize('script, args, tail', [
    ('slurm_test.sh', ['part', 'job', 'c.py', 'e.pth', '--out', 'a b.json'],
     ['test.py', 'c.py', 'e.pth', '--out', 'a b.json']),
    ('slurm_train.sh', ['part', 'job', 'c.py', 'wd', '--amp'],
     ['train.py', 'c.py', '--work-dir=wd', '--amp']),
])
def test_slurm_command(fake_srun, script, args, tail):
    env, log = fake_srun
    run_tool([osp.join(TOOLS, script), *args], timeout=30, env=env)
    argv = log.read_text().splitlines()
    assert argv[:7] == [
        '-p', 'part', '--job-name=job', '--gres=gpu:2', '--ntasks=4',
        '--ntasks-per-node=2', '--cpus-per-task=5'
    ]
    assert argv[8:10] == ['--quotatype=auto', '--qos=x']
    assert argv[11] == '-u'
    assert argv[12] == osp.join(TOOLS, tail[0])
    assert argv[13:] == tail[1:] + ['--launcher=slurm']
