"""common stages."""
