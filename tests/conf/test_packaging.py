"""A non-editable install ships every package: pyproject's list names each one in bertlab/."""

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_is_listed_in_pyproject():
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "bertlab").rglob("__init__.py")
    }
    assert packages <= set(settings["packages"]), packages - set(settings["packages"])
    assert settings["package-dir"]["bertlab.conf"] == "conf"
