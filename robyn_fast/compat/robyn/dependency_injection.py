"""``robyn.dependency_injection``: ``DependencyMap``."""

from robyn_fast.compat import module_getattr
from robyn_fast.dependency_injection import DependencyMap

__all__ = ["DependencyMap"]

__getattr__ = module_getattr("robyn.dependency_injection")
