"""A toy space and a toy method, defined here only: the proof that a new space, method and strategy
need no edit to `nas/` (tests/test_extension.py). Importing the package registers the space."""

from nas.spaces.base import register_space
from tests.toy_nas.space import ToyChild, ToySpace, ToySupernet

register_space(ToySpace, ToySupernet, ToyChild)
