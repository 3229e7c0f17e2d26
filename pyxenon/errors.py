"""Errors the host reports to a user: one line, naming the file and the problem."""


class UserInputError(Exception):
    """A malformed input supplied by the user (ELF, xl.cfg, policy).

    ``str()`` gives the whole one-line message: ``FILE[:LINE]: problem``.
    """

    def __init__(self, path, problem, line=None):
        self.path = str(path)
        self.problem = problem
        self.line = line
        where = self.path if line is None else f"{self.path}:{line}"
        super().__init__(f"{where}: {problem}")
