# Runtime of the DMUE recipes: the project runtime, plus
# * the best checkpoint on the validation metric (as the original, whose
#   "val" set is the benchmark's test split: an optimistic protocol),
# * BranchPruningHook: deploy models (target branch only, BN-neck folded,
#   stock MMPretrain types) for the best checkpoint and at the end of training,
#   under <work_dir>/deploy/ (docs/deploy.md).
_base_ = ['./default_runtime.py']

default_hooks = dict(checkpoint=dict(save_best='auto', rule='greater'))
custom_hooks = [dict(type='BranchPruningHook')]
