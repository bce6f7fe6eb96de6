"""The data the bundle trains and evaluates on.

- :py:mod:`~bundle.data.datalist`: the decathlon-style ``datalist.json`` (``write_datalist``, ``load_datalist``);
- :py:mod:`~bundle.data.dataset`: ``SafeDataset``, a MONAI dataset whose failing cases become error records;
- :py:mod:`~bundle.data.converters`: real data sets (LIDC-IDRI, ISLES'22, any MSD ``dataset.json``) -> datalist;
- :py:mod:`~bundle.data.synthetic`: synthetic lesions inserted into real host scans, and the data sets built from
  them.

See ``docs/data.md`` and ``docs/converters.md``.
"""
