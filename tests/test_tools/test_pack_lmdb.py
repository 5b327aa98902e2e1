"""tools/pack_lmdb.py end to end: one-line errors, and a pack killed with
SIGKILL that --resume completes to the same LMDB as an uninterrupted one."""
import os.path as osp
import shlex
import signal
import sys
import textwrap

import pytest

from conftest import ROOT, TOOLS, load_script, run_tool
from dmue_mm.datasets import read_lmdb_metadata
from dmue_mm.datasets.packers import pack_layout, rafdb_layout
from dmue_mm.utils import write_image_folder
from test_datasets.fakes import lmdb_entries, make_rafdb

PACK = osp.join(TOOLS, 'pack_lmdb.py')

# Runs the tool in-process after patching LMDBWriter.add to SIGKILL the
# process once 10 images are added (two chunks of 4 committed, 2 pending).
KILL_AFTER_10 = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {tools!r})
    from dmue_mm.datasets import LMDBWriter
    add, calls = LMDBWriter.add, []
    def add_then_die(self, *args, **kwargs):
        if len(calls) == 10:
            os.kill(os.getpid(), signal.SIGKILL)
        calls.append(1)
        add(self, *args, **kwargs)
    LMDBWriter.add = add_then_die
    import pack_lmdb
    sys.argv = ['pack_lmdb.py'] + {argv!r}
    pack_lmdb.main()
""")


class TestPackTool:

    def test_bad_input_is_one_line(self, tmp_path, monkeypatch, capsys):
        tool = load_script(PACK, 'pack_lmdb')
        for argv, message in [
            (['rafdb', str(tmp_path), '-o',
              'x'], "error: RAF-DB label file '"),
            ([
                'list', '--list', 'train', '--image-root', '.', '--classes',
                '2', '-o', 'x'
            ], 'error: --list takes NAME=VALUE items'),
        ]:
            monkeypatch.setattr(sys, 'argv', ['pack_lmdb.py'] + argv)
            with pytest.raises(SystemExit) as exit_info:
                tool.main()
            assert exit_info.value.code == 2
            lines = capsys.readouterr().err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith(message)

    @pytest.mark.parametrize('repeated', [False, True])
    def test_readme_list_command(self, tmp_path, repeated):
        """The README's ``pack_lmdb.py list`` line, run as written (and with
        ``--list`` repeated, the other accepted form)."""
        with open(osp.join(ROOT, 'README.md')) as f:
            line = next(
                line for line in f
                if line.startswith('python tools/pack_lmdb.py list '))
        argv = shlex.split(line.split('#')[0])
        assert argv[:3] == ['python', 'tools/pack_lmdb.py', 'list']
        if repeated:
            at = argv.index('--list')
            argv[at:at + 3] = ['--list', argv[at + 1], '--list', argv[at + 2]]
        classes = argv[argv.index('--classes') + 1].split(',')
        root = tmp_path / argv[argv.index('--image-root') + 1]
        lists = dict(
            item.split('=') for item in argv
            if '=' in item and not item.startswith('-'))
        per_class = {split: 1 + i for i, split in enumerate(lists)}
        write_image_folder(str(root), classes, per_class, size=16)
        for split, name in lists.items():
            with open(tmp_path / name, 'w') as f:
                for label, cls in enumerate(classes):
                    for image in sorted((root / split / cls).iterdir()):
                        f.write(f'{split}/{cls}/{image.name} {label}\n')
        run_tool([PACK, *argv[2:], '--no-progress'],
                 timeout=120,
                 cwd=str(tmp_path))
        out = tmp_path / argv[argv.index('-o') + 1]
        meta = read_lmdb_metadata(str(out))
        assert meta['classes'] == classes
        assert {s: len(v['keys'])
                for s, v in meta['splits'].items()} == {
                    split: count * len(classes)
                    for split, count in per_class.items()
                }

    def test_sigkill_then_resume_equals_uninterrupted(self, tmp_path):
        make_rafdb(str(tmp_path / 'raf'))
        root = str(tmp_path / 'raf')
        reference = pack_layout(
            rafdb_layout(root),
            str(tmp_path / 'ref'),
            progress=False,
            commit_every=4)
        out = str(tmp_path / 'out.lmdb')
        argv = ['rafdb', root, '-o', out, '--commit-every', '4']
        killed = run_tool([
            sys.executable, '-c',
            KILL_AFTER_10.format(tools=TOOLS, argv=argv)
        ],
                          timeout=120,
                          check=False)
        assert killed.returncode == -signal.SIGKILL
        assert not osp.exists(out) and osp.isdir(out + '.partial')

        resumed = run_tool([PACK] + argv + ['--resume'], timeout=120)
        assert (f'packed {out}: train 14, test 7 (13 written now, 8 resumed)'
                in resumed.stdout)
        assert (f'0 unreadable images listed in {out}.unreadable.txt'
                in resumed.stdout)
        assert lmdb_entries(out) == lmdb_entries(reference.out_path)
