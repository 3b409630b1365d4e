"""The esim command-line interface (``esim --help``)."""
