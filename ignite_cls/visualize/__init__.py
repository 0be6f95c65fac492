"""Pictures of predictions: drawing (``draw``), PNG files that name their source (``png``)
and windows (``windows``). The handler that uses them is ``handlers/visualize.py``."""
