"""Every train and test run is an MLflow run.

- ``store``: where runs go; the store and experiment made ready before the workers start.
- ``records``: what a run records besides metrics (params, tags, datasets, tables).
- ``run``: one run's lifecycle (open, resume, buffered metrics, files, status at the end).
- ``training``, ``testing``: what the train and the test run add.
- ``plots``: the figures a person would rather look at than read.

Nothing is imported here, so the CLI can use ``store`` without loading torch.
"""
