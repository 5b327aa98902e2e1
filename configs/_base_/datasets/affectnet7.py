# AffectNet-7 (manually annotated, no Contempt; test = the official
# validation set), aligned and packed with:
#   tools/align.py ROOT --dataset affectnet --affectnet-classes 7 \
#       --out data/affectnet7/affectnet7.lmdb
_base_ = ['./expression_lmdb.py']
dataset_type = 'AffectNet7'
data_root = 'data/affectnet7/affectnet7.lmdb'
num_classes = 7

data_preprocessor = dict(num_classes=num_classes)
train_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
val_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
test_dataloader = val_dataloader
