"""The one exception type for bad input data; its message names the file and line or record."""


class DataError(ValueError):
    """Bad input data. The message reads `path:line: what is wrong` (or `path: ...`)."""

    def __init__(self, path, what: str, line: int | None = None):
        self.path, self.line, self.what = str(path), line, what
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {what}")
