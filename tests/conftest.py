"""Shared fixtures: generated data and a subprocess runner with a timeout.

Every test that starts processes goes through :func:`run_tool`, which kills
the whole process group when the timeout expires, so a hang fails fast.
"""
import importlib.util
import os
import os.path as osp
import signal
import socket
import subprocess
import sys
from typing import Dict, Optional, Sequence

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
#: test-only modules, importable here and in tool subprocesses
HELPERS = osp.join(ROOT, 'tests', 'helpers')
sys.path.insert(0, HELPERS)
TOOLS = osp.join(ROOT, 'tools')
CONFIGS = osp.join(ROOT, 'configs')
BASELINE_CFG = osp.join(CONFIGS, 'baseline', 'res18_ce_generated.py')
CLASSES = ('angry', 'happy', 'neutral', 'sad')


def tool_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """Environment of a tool subprocess: the repo importable, quiet, 1 thread
    per process unless set."""
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        p for p in (ROOT, HELPERS, env.get('PYTHONPATH')) if p)
    env.setdefault('PYTHONWARNINGS', 'ignore')
    env['PYTHON'] = sys.executable
    env.update(extra or {})
    return env


def run_tool(args: Sequence[str],
             timeout: float = 300,
             cwd: Optional[str] = None,
             env: Optional[Dict[str, str]] = None,
             check: bool = True) -> subprocess.CompletedProcess:
    """Run a command in its own process group with a hard timeout.

    Args:
        args: The command; a first item ending in ``.py`` runs under this
            interpreter.
        timeout: Seconds before the whole process group is killed and the
            test fails.
        cwd: Working directory (defaults to the repo root).
        env: Extra environment variables.
        check: Fail the test on a non-zero exit code.

    Returns:
        CompletedProcess with ``stdout`` and ``stderr`` as text.
    """
    args = [str(a) for a in args]
    if args[0].endswith('.py'):
        args = [sys.executable] + args
    proc = subprocess.Popen(
        args,
        cwd=cwd or ROOT,
        env=tool_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f'{" ".join(args)} timed out after {timeout}s\n'
                    f'stdout:\n{stdout[-3000:]}\nstderr:\n{stderr[-3000:]}')
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    result = subprocess.CompletedProcess(args, proc.returncode, stdout, stderr)
    if check and proc.returncode != 0:
        pytest.fail(f'{" ".join(args)} exited with {proc.returncode}\n'
                    f'stdout:\n{stdout[-5000:]}\nstderr:\n{stderr[-5000:]}')
    return result


def load_script(path: str, name: str):
    """Import a script (``tools/*.py``, ``benchmarks/*.py``: not packages)
    as a module named ``name``, to call its functions in-process."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    """A TCP port that is free on localhost right now (for torchrun)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def data_root_options(root: str, fields=('train_dataloader', 'val_dataloader',
                                         'test_dataloader')) -> list:
    """``--cfg-options`` items pointing the dataloaders at ``root``."""
    return [f'{field}.dataset.data_root={root}' for field in fields]


def tensorboard_scalars(work_dir: str) -> Dict[str, list]:
    """Every scalar of the TensorBoard event files of a tool run.

    Args:
        work_dir: The run's ``--work-dir``; events are read from its single
            ``<timestamp>/vis_data/`` folder, as TensorBoard itself would.

    Returns:
        dict: tag -> list of ``(step, value)`` in the order written.
    """
    import glob
    from tensorboard.backend.event_processing.event_accumulator import \
        EventAccumulator
    (folder, ) = glob.glob(osp.join(work_dir, '*', 'vis_data'))
    assert glob.glob(osp.join(folder, 'events.out.tfevents.*')), \
        f'no TensorBoard event file in {folder}'
    events = EventAccumulator(folder, size_guidance={'scalars': 0})
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)]
        for tag in events.Tags()['scalars']
    }


@pytest.fixture(scope='session')
def image_folder(tmp_path_factory) -> str:
    """A generated 4-class ``train``/``val`` image folder (32x32 PNGs)."""
    from dmue_mm.utils import write_image_folder
    root = str(tmp_path_factory.mktemp('image_folder'))
    write_image_folder(root, CLASSES, {'train': 10, 'val': 4}, size=32)
    return root
