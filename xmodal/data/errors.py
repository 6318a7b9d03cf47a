"""The error raised for a dataset on disk that does not match xmodal's format."""


class DatasetFormatError(ValueError):
    """Names the file and the field at fault and what was expected."""

    def __init__(self, path: object, field: str, problem: str) -> None:
        self.path, self.field, self.problem = str(path), field, problem
        super().__init__(f"{self.path}: {field}: {problem}")
