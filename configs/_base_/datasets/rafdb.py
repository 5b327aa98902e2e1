# RAF-DB basic (7 classes), packed with:
#   tools/pack_lmdb.py rafdb RAF-DB/basic -o data/rafdb/rafdb.lmdb
_base_ = ['./expression_lmdb.py']
dataset_type = 'RAFDB'
data_root = 'data/rafdb/rafdb.lmdb'
num_classes = 7

data_preprocessor = dict(num_classes=num_classes)
train_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
val_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
test_dataloader = val_dataloader
