"""Checkpoints in and out: bertlab `.ckpt` files, Hugging Face directories, `model.init`.

`io` loads safely (no file ever runs code) and saves atomically; `hf` reads and writes
Hugging Face BERT directories; `init` resolves `model.init` once per run; `restore`
rebuilds task modules for predict, embed and export; `export` writes ONNX, TorchScript
and Hugging Face directories. The modules import each other in that order only.
"""
