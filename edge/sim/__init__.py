"""The virtual CCCD: a faithful simulated chip behind pcscd's vpcd driver, with profiles, quirks and faults."""
