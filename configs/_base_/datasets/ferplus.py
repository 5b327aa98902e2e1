# FERPlus (8 classes, majority-vote labels), packed with:
#   tools/pack_lmdb.py ferplus fer2013.csv fer2013new.csv
# Splits: train = Training, val = PublicTest, test = PrivateTest (the usual
# protocol: select on PublicTest, report PrivateTest). Evaluation samples
# carry gt_score, the 8-way vote distribution; training uses the hard labels
# (with score_extra='votes' MMPretrain's ClsHead would train on the votes).
_base_ = ['./expression_lmdb.py']
dataset_type = 'FERPlus'
data_root = 'data/ferplus/ferplus.lmdb'
num_classes = 8

data_preprocessor = dict(num_classes=num_classes)
train_dataloader = dict(
    dataset=dict(type=dataset_type, data_root=data_root, score_extra=None))
val_dataloader = dict(
    dataset=dict(type=dataset_type, data_root=data_root, split='val'))
test_dataloader = dict(
    dataset=dict(type=dataset_type, data_root=data_root, split='test'))
