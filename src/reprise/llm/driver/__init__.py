"""The sequential block driver shared by every layer-wise method."""
from reprise.llm.driver.config import DriverConfig
from reprise.llm.driver.sequential import LOG_COLUMNS, CompressionResult, compress_model, pack_mask, unpack_mask

__all__ = ["LOG_COLUMNS", "CompressionResult", "DriverConfig", "compress_model", "pack_mask", "unpack_mask"]
