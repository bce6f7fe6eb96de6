"""Research, not the product: the experiments that measured the bundle against the source paper and MONAI's networks.

Nothing outside ``bundle.experiments`` imports it (the inference, training and evaluation configs never reach it);
the command lines in ``scripts/`` and the research configs in ``bundle/experiments/configs/`` (experiments that
were not adopted) do. Its modules:

- :py:mod:`~bundle.experiments.ablation`: the source paper's ablation and the MONAI baselines, every variant trained
  and evaluated by the bundle's own configs;
- :py:mod:`~bundle.experiments.benchmark`, :py:mod:`~bundle.experiments.benchmark_plan` and
  :py:mod:`~bundle.experiments.benchmark_report`: the CPU benchmark (one process per measurement), its named rows,
  and a run with its report;
- :py:mod:`~bundle.experiments.comparison`: the comparison detectors (MONAI's RetinaNet), trained and scored like
  the bundle's network;
- :py:mod:`~bundle.experiments.model_stats`: parameter and FLOP counts;
- :py:mod:`~bundle.experiments.analysis`: the source paper's analyses (lesion features, layer responses, attention
  gain, screening separation) and the error analysis of an evaluation;
- :py:mod:`~bundle.experiments.reevaluate`: an evaluation scored again against reference lesions rebuilt from its
  label maps, and the gaps between label components;
- :py:mod:`~bundle.experiments.memory_bound`: the peak memory of the inference command on one large volume
  (:py:mod:`~bundle.experiments.memory`: the process-memory readings it and the benchmark share);
- :py:mod:`~bundle.experiments.profile_stages` (with its standalone ``profile_driver``): the main command stage by
  stage, a release checkout against the current tree;
- :py:mod:`~bundle.experiments.markdown`: the Markdown tables of these reports.
"""
