"""acqd: the acquisition-side streaming daemon for microscopy data."""

__version__ = "0.1.0"
