"""Data tools: the test producer (``filodb gen``), file import and export, the XOR chunk codec."""
