# The released DMUE training protocol (its train.py), on top of the DMUE
# schedule and runtime; docs/recipes.md describes each item:
# * DMUETrainLoop: evaluation after every 200th iteration of an epoch and
#   at every epoch end, on the "val" split (the benchmark's test split, as
#   the original); every batch with a class of fewer than 2 samples
#   (absent classes included) is skipped, with no optimiser step;
# * InEpochCheckpointHook: the best checkpoint over all those evaluations
#   (BranchPruningHook writes its deploy model);
# * EvalModeSwitchHook: from iteration 200 of each epoch to its end the
#   whole model trains in eval mode (BN statistics frozen, dropout off);
# * total_batch_size: 72 over all processes; tools/train.py gives each of
#   k processes 72 / k samples and global pairwise statistics.
# The recipes add the released model (models/dmue_*_released.py: MS-Celeb-1M
# initialisation, frozen uncertainty MLP and BN-neck affine).
_base_ = ['./schedules/dmue_adam_36e.py', './dmue_runtime.py']

train_cfg = dict(
    _delete_=True,
    type='DMUETrainLoop',
    max_epochs=36,
    val_interval=1,
    val_iters=200,
    skip_batches=True)
default_hooks = dict(
    checkpoint=dict(type='InEpochCheckpointHook'),
    eval_mode=dict(type='EvalModeSwitchHook', iters=200))
total_batch_size = 72
