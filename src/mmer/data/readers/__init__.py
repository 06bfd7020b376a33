"""Dataset readers. Every module here registers its dataset name(s) in `mmer.registry.DATASETS`."""
