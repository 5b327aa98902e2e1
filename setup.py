"""Install the dmue_mm plugin.

The full, pinned install (a virtual environment with the stack, the test
requirements and facenet-pytorch without its stale dependency pins) is
``tools/quickstart.sh install``; see the README.
"""
import os.path as osp

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


def read_requirements(name: str) -> list:
    """Requirement lines of ``requirements/<name>.txt`` without comments."""
    with open(osp.join(HERE, 'requirements', f'{name}.txt')) as f:
        lines = (line.split('#')[0].strip() for line in f)
        return [line for line in lines if line]


def read_version() -> str:
    namespace: dict = {}
    with open(osp.join(HERE, 'dmue_mm', 'version.py')) as f:
        exec(f.read(), namespace)
    return namespace['__version__']


setup(
    name='dmue_mm',
    version=read_version(),
    description='DMUE (CVPR 2021) facial expression recognition under label '
    'ambiguity, as an MMPretrain plugin',
    long_description=open(osp.join(HERE, 'README.md')).read(),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.10',
    packages=find_packages(include=['dmue_mm', 'dmue_mm.*']),
    # the configs, for `_base_ = 'dmue_mm::dmue/res18_rafdb.py'` (MMPretrain's
    # `.mim` layout; in the repository `dmue_mm/.mim/configs` is a symlink
    # to configs/, which a wheel build copies)
    package_data={'dmue_mm': ['.mim/configs/**/*.py']},
    install_requires=read_requirements('runtime'),
    extras_require=dict(
        tests=read_requirements('tests'),
        optional=read_requirements('optional')),
    zip_safe=False,
)
