"""Device drivers: one device each, each the only importer of its library."""
