"""The family contract: what the engine and every family agree on, below both.

* :mod:`~medgen_cli.contract.family` — the :class:`Family` base class (build, train_step, sample ...)
* :mod:`~medgen_cli.contract.config` — the config base models (``FamilyConfig``, ``TrainerConfig``)
* :mod:`~medgen_cli.contract.options` — typed inference options (``SampleOptions`` ...)
* :mod:`~medgen_cli.contract.capabilities` — what a family can do at inference, as types
  (``Sampling[Options]``, ``Interpolating[...]``, ``Reconstructing[...]``)
* :mod:`~medgen_cli.contract.samples` — :class:`Samples`, what inference returns
* :mod:`~medgen_cli.contract.context` — what a family sees of the trainer (``TrainContext``,
  ``InferenceContext``) and the services the engine passes in (``RunLoader``)
* :mod:`~medgen_cli.contract.metric_names` — the metric-name scheme
* :mod:`~medgen_cli.contract.registry` — the family registry

It imports nothing of the package above :mod:`medgen_cli.errors` and :mod:`medgen_cli.devices`
(see ``tests/test_architecture.py`` for the layers). Nothing is imported here, so
``import medgen_cli.contract.registry`` stays light.
"""
