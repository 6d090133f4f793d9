"""Access control protocols (BAC, PACE, CA, AA), each returning a frozen result."""
