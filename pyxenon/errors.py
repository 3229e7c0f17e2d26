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


def read_user_file(path, what):
    """The bytes of a user's file, or UserInputError "cannot read <what>: reason"."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise UserInputError(path, f"cannot read {what}: {reason}") from None
