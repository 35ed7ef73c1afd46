"""Hand-in 3: pre-training, finetuning and data augmentation.

Modules you complete: ``augmentations``, ``network``, ``utils``.
Provided modules: ``data``, ``training``, ``plotting``, ``checks`` (visible self-checks),
``engine`` (the fast experiment engine) and ``findings`` (tests the report's claims).
"""
