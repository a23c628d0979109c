"""Suite-wide settings.

The suite runs as two pytest-xdist workers on two cores (see the Makefile); each worker
uses one intra-op thread so the workers do not oversubscribe the cores. Small batched
FFTs and matrix products were measured to stall for milliseconds per call when threads
outnumber free cores.
"""

import torch

torch.set_num_threads(1)
