"""`bertlab-export`: a bertlab checkpoint as a Hugging Face directory, ONNX or TorchScript.

bertlab-export CKPT format=hf out=DIR            # transformers' from_pretrained loads DIR
bertlab-export CKPT format=onnx out=DIR          # DIR/model.onnx (classification, regression, QA)
bertlab-export CKPT format=onnx quantize=int8 out=DIR   # int8 weights (ONNX Runtime)
bertlab-export CKPT format=torchscript out=DIR   # DIR/model.pt   (classification, regression, QA)

Settings are `key=value` as in bertlab-train: `format` and `out` (required), `opset`
(ONNX opset, default 17), `quantize=int8` (ONNX only: int8 weights, dynamic quantization).
Every export also writes `config.json` (with `id2label` and `label2id` for classification)
and the tokenizer (`tokenizer.json`, `vocab.txt`,
`tokenizer_config.json`). ONNX and TorchScript models take `input_ids`,
`token_type_ids`, `attention_mask` (int64, batch x sequence, both axes dynamic, sequence
up to max_position_embeddings) and return `logits` (classification), `score`
(regression) or `start_logits` + `end_logits` (QA).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from bertlab.checkpoints.export import export
from bertlab.cli.errors import exit_on_user_errors
from bertlab.errors import ConfigError


def parse_settings(arguments: Sequence[str]) -> tuple[str, dict]:
    """`CKPT key=value ...` -> (CKPT, {key: value}); unknown or repeated keys are errors."""
    allowed = {"format", "out", "opset", "quantize"}
    positional = [a for a in arguments if "=" not in a]
    if len(positional) != 1:
        raise ConfigError("usage: bertlab-export CKPT format=hf|onnx|torchscript out=DIR [opset=N]")
    settings = {}
    for argument in arguments:
        if "=" not in argument:
            continue
        key, value = argument.split("=", 1)
        if key not in allowed:
            raise ConfigError(
                f"{key}={value}: unknown setting; allowed: {', '.join(sorted(allowed))}"
            )
        settings[key] = value
    for key in ("format", "out"):
        if key not in settings:
            raise ConfigError(f"missing {key}=...; usage: bertlab-export CKPT format=hf out=DIR")
    if "opset" in settings:
        if not settings["opset"].isdigit():
            raise ConfigError(f"opset={settings['opset']}: must be an integer")
        settings["opset"] = int(settings["opset"])
    return positional[0], settings


@exit_on_user_errors
def main(argv: Sequence[str] | None = None) -> None:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments or arguments[0] in ("-h", "--help"):
        print(__doc__)
        return
    checkpoint, settings = parse_settings(arguments)
    path = export(checkpoint, **settings)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
