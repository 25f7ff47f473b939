"""asrcompress: how compression changes ASR accuracy and cost under acoustic mismatch."""

__version__ = "0.1.0"
