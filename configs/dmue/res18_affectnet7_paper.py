# The paper's method with the recipe of res18_affectnet7.py: the uncertainty
# MLP and the BN-neck affine train, train mode throughout, every batch used
# (docs/recipes.md). Pretraining, data, schedule, total batch and evaluation as
# there.
_base_ = ['./res18_affectnet7.py']
model = dict(head=dict(released_code=False))
train_cfg = dict(skip_batches=False)
default_hooks = dict(eval_mode=dict(iters=None))
