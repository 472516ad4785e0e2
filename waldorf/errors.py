"""The one exception a user can cause, so the command line can tell it from a bug.

A ``UserError`` is a problem with something the user gave: a file that is missing or
malformed, a model folder that is not one, an argument value that cannot work. The
``waldorf`` command prints it as one line, ``waldorf <command>: error: <message>``, and exits
with status 2; any other exception is a bug and keeps its traceback. Messages name the file
and, where there is one, the article or question id. Explained in book/intro.md.
"""

from __future__ import annotations


class UserError(ValueError):
    """Bad input from the user (file, folder or argument); the message says what and where.

    A ``ValueError`` so that library callers who catch that keep working.
    Explained in book/intro.md.
    """
