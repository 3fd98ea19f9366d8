"""The error classes under the original SDK's module name: the same classes as
`statehouse.errors`, so `except statehouse.exceptions.ConflictError` catches either."""

from statehouse.errors import *  # noqa: F403
from statehouse.errors import __all__ as __all__
