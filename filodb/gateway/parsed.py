"""What a line-protocol parser returns: the good samples as a batch, the bad lines as errors."""

from __future__ import annotations

from dataclasses import dataclass, field

from filodb.model.batch import SampleBatch


@dataclass
class ParseResult:
    """``batch`` holds every sample of the well-formed lines; ``errors`` lists
    ``(line number, message)`` for each rejected line (1-based); ``lines`` counts every line
    of the body, ``blank`` those that carry no data (blank or whitespace only, comments)."""

    batch: SampleBatch
    errors: list[tuple[int, str]] = field(default_factory=list)
    lines: int = 0
    blank: int = 0
