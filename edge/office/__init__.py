"""The office side: verify results and a reference receiver."""
