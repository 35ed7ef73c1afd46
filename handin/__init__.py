"""Hand-in 3: pre-training, finetuning and data augmentation.

Modules you complete: ``augmentations``, ``network``, ``utils``.
Provided modules: ``blending`` (applies your augmentations to a batch), ``data``,
``training``, ``plotting``, ``checks`` (visible self-checks), ``engine`` (the fast
experiment engine; its parts are in ``engine_config``, ``engine_stacked``,
``engine_grouped``, ``engine_group``, ``engine_results``; ``engine_dask`` runs it on a Dask
cluster) and ``findings`` (tests the report's claims).
"""
