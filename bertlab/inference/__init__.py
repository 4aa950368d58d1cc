"""Running a restored model on user inputs (`bertlab-predict`, `bertlab-embed`).

`io` reads JSON Lines or text and writes JSON Lines; `batches` turns texts into padded
tensors; `task_model` is a fine-tuned model as inference sees it, run by PyTorch
(`torch_task_model`) or by ONNX Runtime (`onnx_runtime`); `classify` and `qa` decode one
kind of task model's outputs and `predict` picks between them; `embed` runs an encoder.
Loading the model is `bertlab.checkpoints.restore`.
"""
