"""The target formats by name, and the module of ``workbench.writers`` that writes each.

Kept apart from the writers so that the command line can offer the targets without
importing any writer (or the graph library they need).
"""

from __future__ import annotations

# target name -> module of workbench.writers that writes it
TARGET_MODULES = {"onnx": "onnx_writer", "caffe": "caffe", "msnhnet": "msnhnet", "pytorch": "pytorch"}
TARGETS = tuple(TARGET_MODULES)
