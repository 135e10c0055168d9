"""What a line-protocol parser returns: the good samples as a batch, the bad lines as errors."""

from __future__ import annotations

from dataclasses import dataclass, field

from filodb.model.batch import SampleBatch


@dataclass
class ParseResult:
    """``batch`` holds every sample of the well-formed lines; ``errors`` lists
    ``(line number, message)`` for each rejected line (1-based)."""

    batch: SampleBatch
    errors: list[tuple[int, str]] = field(default_factory=list)
    lines: int = 0
