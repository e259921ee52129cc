"""Errors a user can act on. Their text is one line that names the thing that is wrong."""


class EximError(Exception):
    """A problem with the user's input or environment; the CLI prints it and exits 2."""


class BundleError(EximError):
    """A bundle on disk is malformed, incomplete or of an unknown format version."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")
