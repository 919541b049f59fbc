"""The pipeline: providers, stages, the lake's writers and the serving loads.

Importing it turns off the kernels' preload at import (``marketlake.PRELOAD_KERNELS``): a
nightly increment's kernel calls are small, run by the module compiled ahead of time, and a
background load of numba would only cost it CPU; a full compute starts the load itself.
"""

import marketlake

marketlake.PRELOAD_KERNELS = False
