# SFEW 2.0 (7 classes; test = the official Val set), packed with:
#   tools/pack_lmdb.py folder ROOT --splits Train=train Val=test \
#       -o data/sfew/sfew.lmdb
_base_ = ['./expression_lmdb.py']
dataset_type = 'SFEW'
data_root = 'data/sfew/sfew.lmdb'
num_classes = 7

data_preprocessor = dict(num_classes=num_classes)
train_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
val_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
test_dataloader = val_dataloader
