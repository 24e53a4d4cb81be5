"""One exception hierarchy for everything facet3d raises on purpose.

The CLI turns any `Facet3DError` into one line on stderr and its `exit_code`
(2 for usage errors, 1 for failures); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class Facet3DError(Exception):
    """A failure the user can act on; printed as one line, exit code 1."""

    exit_code = 1


class UsageError(Facet3DError):
    """Bad options or arguments (exit code 2)."""

    exit_code = 2


class InputError(Facet3DError):
    """A missing, unreadable or malformed input file."""


class FormatError(InputError):
    """The file's content does not parse as the format it claims (or none we know)."""


class UnknownFormatError(FormatError):
    """No registered reader or writer handles this file."""


class GeometryError(Facet3DError):
    """Geometry that cannot be processed: empty, degenerate, non-finite, wrong shape."""


class PluginError(Facet3DError):
    """A plugin failed to load or register, or two plugins clash."""


class BackendError(Facet3DError):
    """No kernel backend accepts the inputs; the message lists every refusal."""


class ResourceError(Facet3DError):
    """A job refused up front: its estimated memory (or another resource) exceeds what the machine has."""


class CheckpointError(Facet3DError):
    """A checkpoint that is missing, unsafe or does not match the model."""


class Facet3DWarning(UserWarning):
    """Something the user should know that does not stop the job (data scaled, a guess made).

    Library code raises it with ``warnings.warn(msg, Facet3DWarning)``; the CLI prints it as one
    ``facet3d: warning: ...`` line (never Python's file:line form).
    """
