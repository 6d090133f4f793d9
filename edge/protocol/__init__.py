"""Pure protocol code: bytes in, objects out. Never imports edge.drivers, edge.daemon or edge.sim."""
