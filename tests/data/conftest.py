"""The bad-data matrix's fixture: a valid dataset of one reader, ready to be spoiled."""

from __future__ import annotations

import pytest

from support.bad_data import BY_NAME, config_for


@pytest.fixture
def prepared(composed_tasks, tmp_path):
    """(reader name) -> (reader, cfg, the file to spoil), with valid data written."""

    def prepare(name: str):
        reader = BY_NAME[name]
        data_dir = tmp_path / "data"
        data_file = reader.write(data_dir)
        return reader, config_for(composed_tasks, reader, data_dir, data_file), data_file

    return prepare
