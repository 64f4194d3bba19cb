"""The parameter-space language and the paper's search spaces (Appendix E, Tables 9-13).

>>> from search_spaces import load_space
>>> space = load_space("cifar/sassha")
>>> len(space.grid())
189
"""

from search_spaces.registry import PAPER_DIR, list_spaces, load_space
from search_spaces.space import KINDS, Param, Space, SpaceError, cartesian, parse_space, union

__all__ = [
    "KINDS",
    "PAPER_DIR",
    "Param",
    "Space",
    "SpaceError",
    "cartesian",
    "list_spaces",
    "load_space",
    "parse_space",
    "union",
]
