# AffectNet-8 (manually annotated; test = the official validation set),
# aligned and packed with:
#   tools/align.py ROOT --dataset affectnet --affectnet-classes 8 \
#       --out data/affectnet8/affectnet8.lmdb
_base_ = ['./expression_lmdb.py']
dataset_type = 'AffectNet8'
data_root = 'data/affectnet8/affectnet8.lmdb'
num_classes = 8

data_preprocessor = dict(num_classes=num_classes)
train_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
val_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
test_dataloader = val_dataloader
