"""humpback: iterative self-alignment by instruction backtranslation."""

__version__ = "0.1.0"
# Bumped whenever the layout or meaning of a run folder's files changes; part of every stage hash.
FORMAT_VERSION = 2
