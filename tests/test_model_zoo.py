"""The model zoo (configs/dmue/metafile.yml and configs/dmue/README.md):
MMPretrain's metafile loader accepts it, it covers every recipe, its numbers
agree with the project README, and every command on the page parses."""
import glob
import os.path as osp
import re
import shlex

import pytest
from conftest import CONFIGS, ROOT, TOOLS, load_script
from modelindex.load_model_index import load

from dmue_mm.utils.cli import check_cfg_options, load_config

ZOO = osp.join(CONFIGS, 'dmue')
PAGE = osp.join(ZOO, 'README.md')
MODEL_INDEX = osp.join(ROOT, 'model-index.yml')


def recipes():
    """Benchmark recipes: every config in configs/dmue/ except the
    generated-data one and the ``*_paper.py`` variants."""
    return sorted(
        osp.relpath(p, ROOT) for p in glob.glob(osp.join(ZOO, '*.py'))
        if not (p.endswith('res18_generated.py') or p.endswith('_paper.py')))


@pytest.fixture(scope='module')
def models():
    index = load(MODEL_INDEX)
    index.build_models_with_collections()
    # modelindex resolves README paths from the metafile's folder; MMPretrain
    # (and this index) write them from the repository root: checked below
    errors = [
        f'{entry["filepath"]} {entry["type"]}: {error}'
        for entry in index.collect_check_errors()
        for error in entry['errors']
        if not error.startswith('Path to README file')
    ]
    assert not errors, errors
    for collection in index.collections:
        assert osp.isfile(osp.join(ROOT, collection.readme)), collection.name
    return index.models


def top1(model):
    return model.results[0].metrics['Top 1 Accuracy']


def test_metafile_configs_exist_and_cover_every_recipe(models):
    for model in models:
        assert osp.isfile(osp.join(ROOT, model.config)), \
            f'{model.name}: config {model.config} does not exist'
    listed = {m.config for m in models}
    missing = [c for c in recipes() if c not in listed]
    assert not missing, f'no metafile.yml entry for {missing}'
    names = [m.name for m in models]
    assert len(names) == len(set(names))


def test_numbers_agree_with_the_page_and_the_readme(models):
    with open(PAGE) as f:
        page = f.read()
    with open(osp.join(ROOT, 'README.md')) as f:
        readme = f.read()
    published = readme.split('### Published numbers')[1].split('###')[0]
    for model in models:
        if not model.config.startswith('configs/dmue/'):
            continue
        name = osp.basename(model.config)
        (row, ) = [
            line for line in page.splitlines()
            if line.startswith(f'| [`{name}`]')
        ]
        if model.results is None:
            assert '| – |' in row, f'{name}: the page shows a number'
            continue
        value = f'{top1(model):.2f}'
        assert f'| {value} |' in row, f'{name}: page row {row!r}'
        assert value in published, \
            f'{name}: {value} not in the README results table'


def test_official_checkpoints(models):
    converted = {
        m.name: m.data['Converted From']['File']
        for m in models if 'Converted From' in m.data
    }
    assert converted == {
        'dmue_res18_affectnet': 'ep7_b3400_acc0.6285.pth',
        'faceres18_mvsoftmax_msceleb': 'mv_epoch_17.pt',
    }


def test_mmpretrain_model_hub_lists_the_recipes(models, monkeypatch):
    from mmpretrain.apis import ModelHub, list_models

    # only this index: skip MMPretrain's own and leave the hub as it was
    monkeypatch.setattr(ModelHub, '_models_dict', {})
    monkeypatch.setattr(ModelHub, '_ModelHub__mmpretrain_registered', True)
    ModelHub.register_model_index(MODEL_INDEX, config_prefix=ROOT)
    names = {m.name for m in models if m.config.startswith('configs/dmue/')}
    assert set(list_models('dmue')) == names
    assert ModelHub.get('dmue_res18_rafdb').config.model.head.num_classes \
        == 7


def page_commands():
    """Every command of the page's fenced ``bash`` blocks, as tokens."""
    with open(PAGE) as f:
        blocks = re.findall(r'^```bash\n(.*?)^```', f.read(), re.M | re.S)
    commands = []
    for block in blocks:
        for line in block.replace('\\\n', ' ').splitlines():
            tokens = shlex.split(line, comments=True)
            if tokens:
                commands.append(tokens)
    return commands


def test_page_has_commands():
    tools = {tokens[1] for tokens in page_commands()}
    assert {'tools/convert.py', 'tools/test.py', 'tools/train.py'} <= tools


@pytest.mark.parametrize(
    'tokens', page_commands(), ids=lambda tokens: ' '.join(tokens[1:3]))
def test_page_command_parses(tokens, monkeypatch, capsys):
    assert tokens[0] == 'python' and tokens[1].startswith('tools/'), \
        f'not a "python tools/<tool>.py ..." command: {tokens}'
    script = osp.join(ROOT, tokens[1])
    assert osp.isfile(script), f'{tokens[1]} does not exist'
    tool = load_script(script, 'zoo_' + osp.basename(script)[:-3])
    monkeypatch.setenv('LOCAL_RANK', '0')  # parse_args exports it
    try:
        args = tool.parse_args(tokens[2:])
    except SystemExit as exc:
        pytest.fail(f'{" ".join(tokens)}: argparse exit {exc.code}\n'
                    f'{capsys.readouterr().err}')
    for token in tokens[2:]:
        if token.startswith('configs/'):
            assert osp.isfile(osp.join(ROOT, token)), f'{token} missing'
    if getattr(args, 'cfg_options', None):
        check_cfg_options(load_config(args.config), args.cfg_options)
    assert osp.dirname(script) == TOOLS
