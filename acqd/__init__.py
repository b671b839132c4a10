"""acqd: the acquisition-side streaming daemon for microscopy data."""

import os

# acqd does no linear algebra; OpenBLAS's own threads (one per core, spinning after any call that
# reaches them) only take CPU from the codecs. Set before numpy is first imported; a value the
# operator gives is kept.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
