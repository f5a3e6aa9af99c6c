"""Event data: the published ADC2021 HDF5 layout (loader) and a built-in synthetic generator."""
from models.data.generator import (
    PROCESSES, SYNTHETIC_NOTE, generate, generate_range, lepton_filter, stream, write_published_h5,
)
from models.data.loader import PUBLISHED_FILES, DataError, count_events, iter_chunks, load_events, published_path

__all__ = [
    "PROCESSES", "PUBLISHED_FILES", "SYNTHETIC_NOTE", "DataError", "count_events", "generate", "generate_range",
    "iter_chunks", "lepton_filter", "load_events", "published_path", "stream", "write_published_h5",
]
