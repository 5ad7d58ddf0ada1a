"""The sequential block driver shared by every layer-wise method."""
from reprise.llm.driver.config import DriverConfig
from reprise.llm.driver.sequential import (
    LOG_COLUMNS, CompressionResult, collect_layer_grams, compress_model, pack_mask, unpack_mask,
)

__all__ = ["LOG_COLUMNS", "CompressionResult", "collect_layer_grams", "DriverConfig", "compress_model", "pack_mask", "unpack_mask"]
