"""What can be built: the Arch description, search-space configs and presets, sampling, and the two
readers of an Arch: `graph()` (analytic OpGraph, no torch) and `build()` (the Brevitas module,
imported lazily so that the memory-only paths never load torch)."""

from .arch import Arch, Block, Branch, Fusion, Head
from .graph import graph
from .sampler import RandomSuggest, check_inputs, sample, sample_random
from .space import SearchSpace, load_space, presets, space_from_dict


def build(arch, *args, **kwargs):
    from .builder import build as _build

    return _build(arch, *args, **kwargs)


__all__ = [
    "Arch",
    "Block",
    "Branch",
    "Fusion",
    "Head",
    "RandomSuggest",
    "SearchSpace",
    "build",
    "check_inputs",
    "graph",
    "load_space",
    "presets",
    "sample",
    "sample_random",
    "space_from_dict",
]
