"""Converters from public datasets to xmodal's on-disk format: ``python data_prep/<name>.py --help``."""
