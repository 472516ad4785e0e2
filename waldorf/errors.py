"""The exceptions a user meets, so the command line can tell them from a bug.

A ``UserError`` is a problem with something the user gave: a file that is missing or
malformed, a model folder that is not one, an argument value that cannot work. The
``waldorf`` command prints it as one line, ``waldorf <command>: error: <message>``, and exits
with status 2, and so is a ``CorruptArtifactError`` (a saved file that fails its checksum); any
other exception is a bug and keeps its traceback. Messages name the file
and, where there is one, the article or question id. Explained in book/intro.md.
"""

from __future__ import annotations


class UserError(ValueError):
    """Bad input from the user (file, folder or argument); the message says what and where.

    A ``ValueError`` so that library callers who catch that keep working.
    Explained in book/intro.md.
    """


class CorruptArtifactError(ValueError):
    """A saved file that cannot be trusted (unreadable, or failing its checksum); the message
    names it.

    Not a ``UserError``: the user gave nothing wrong, the disk or an interrupted copy did.
    Explained in book/02_teacher.ipynb.
    """
