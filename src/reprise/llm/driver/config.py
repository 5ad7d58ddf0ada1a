"""Driver options: a frozen, JSON-serialisable record (it enters the resume fingerprint)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from reprise.io import ReproError


@dataclass(frozen=True)
class DriverConfig:
    version = 1
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    gram_dtype: str = "float32"  # float32 | float64
    true_sequential: bool = False  # QuantEase's grouping; off in ALPS/OSSCAR/HASSLE-free and GPTQ's default
    batch_size: int = 1  # calibration sequences per block call
    blocks: tuple[int, int] | None = None  # [start, stop) of blocks to compress; None = all
    offload: bool = True  # move each block to the device only while it is used

    def __post_init__(self):
        if self.gram_dtype not in ("float32", "float64"):
            raise ReproError(f"driver.gram_dtype must be float32 or float64, got {self.gram_dtype!r}")
        if self.batch_size < 1:
            raise ReproError(f"driver.batch_size must be >= 1, got {self.batch_size}")
        if self.blocks is not None:
            blocks = tuple(self.blocks)
            if len(blocks) != 2 or not (0 <= blocks[0] < blocks[1]):
                raise ReproError(f"driver.blocks must be [start, stop) with 0 <= start < stop, got {self.blocks!r}")
            object.__setattr__(self, "blocks", blocks)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["blocks"] = list(self.blocks) if self.blocks else None
        return {"version": self.version, **d}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "DriverConfig":
        d = dict(d or {})
        d.pop("version", None)
        valid = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - valid
        if unknown:
            raise ReproError(f"unknown driver option(s) {sorted(unknown)}; valid: {sorted(valid)}")
        return cls(**d)
