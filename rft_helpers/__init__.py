"""RFT helpers."""
