"""The PyTorch writer: graph -> readable ``model.py`` + ``weights.pt`` + ``provenance.json``.

Importing the op-family modules registers their emitters in ``EMITTERS``.
"""

from . import (  # noqa: F401 (imported for their emitter registrations)
    activations,
    convolution,
    elementwise,
    linear,
    normalization,
    pooling,
    reductions,
    resampling,
    tensors,
)
from .program import EMITTERS
from .writer import build_program, find_problems, write_pytorch

__all__ = ["EMITTERS", "build_program", "find_problems", "write_pytorch"]
