"""bertlab-export's command line: settings checked, what a checkpoint cannot export named."""

from __future__ import annotations

from pathlib import Path

import pytest

from bertlab.cli.export import main


def test_pretraining_checkpoints_export_to_hf_only(checkpoints, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([str(checkpoints["pretraining"]), "format=torchscript", f"out={tmp_path}"])
    assert exit_info.value.code == 2
    assert "PretrainingModule checkpoint: format=onnx and format=torchscript export" in (
        capsys.readouterr().err
    )


def test_export_settings_are_checked(checkpoints, tmp_path: Path, capsys) -> None:
    for arguments, message in (
        (["format=hf"], "usage: bertlab-export CKPT"),
        ([str(checkpoints["qa"]), "format=hf"], "missing out="),
        ([str(checkpoints["qa"]), "format=tflite", "out=x"], "format=tflite: choose one of hf"),
        ([str(checkpoints["qa"]), "format=hf", "out=x", "dtype=fp16"], "dtype=fp16: unknown"),
    ):
        with pytest.raises(SystemExit):
            main(arguments)
        assert message in capsys.readouterr().err
    main([str(checkpoints["qa"]), "format=hf", f"out={tmp_path / 'qa'}"])
    assert f"wrote {tmp_path / 'qa' / 'model.safetensors'}" in capsys.readouterr().out
