"""benchmarks/gpu_check.sh in its CPU dry-run mode: every step runs and the
JSON files it promises are written (the GPU run is the same script)."""
import json
import os.path as osp

from conftest import ROOT, run_tool

SCRIPT = osp.join(ROOT, 'benchmarks', 'gpu_check.sh')


def test_dry_run_writes_every_result(tmp_path):
    out = tmp_path / 'gpu_check'
    run_tool(['bash', SCRIPT, '--dry-run', str(out)], timeout=600,
             env={'OMP_NUM_THREADS': '1'})
    summary = json.loads((out / 'gpu_check.json').read_text())
    assert summary['passed'] and summary['device'] == 'cpu'
    assert set(summary['train_speed']) == {'ce/K=3', 'dmue/K=3',
                                           'released/K=3'}
    assert summary['train_speed']['ce/K=3']['time']['median'] == 1.0
    grads = json.loads((out / 'amp_grads.json').read_text())['parts']
    assert set(grads) == {'trunk', 'target_stage', 'branches', 'head_layers'}
    for part, row in grads.items():
        # float16 keeps 11 bits: a step's gradient is within 2^7 eps16 of
        # float32 (the head test derives the bound)
        assert row['finite'] and row['rel_error_eps16'] < 128, part
    train = json.loads((out / 'train_amp.json').read_text())
    assert train['iterations'] >= 20 and train['finite']
    assert train['optim_wrapper'] == 'BF16AmpOptimWrapper'  # CPU: bf16
