"""Running a restored model on user inputs (`bertlab-predict`, `bertlab-embed`).

`io` reads JSON Lines or text and writes JSON Lines; `batches` turns texts into padded
tensors; `classify`, `qa` and `embed` run one kind of model each; `predict` picks the one a
task module needs. Loading the model is `bertlab.checkpoints.restore`.
"""
