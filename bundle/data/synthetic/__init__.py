"""Synthetic lesions inserted into real host scans that ship inside registry packages (``docs/data.md``).

- :py:mod:`~bundle.data.synthetic.hosts`: the host scans (chest CT, head CT, MR templates): list and load them;
- :py:mod:`~bundle.data.synthetic.head_ct`: the head CT's InVesalius file and its brain-parenchyma mask;
- :py:mod:`~bundle.data.synthetic.host_masks`: where lesions may go in a host, and the real lesion it holds;
- :py:mod:`~bundle.data.synthetic.noise`: a host's noise model and the per-case texture variation;
- :py:mod:`~bundle.data.synthetic.host_context`: a host prepared once for lesion insertion (placement maps, noise);
- :py:mod:`~bundle.data.synthetic.lesion_params`: lesion kinds, shapes, locations, their draw and the lesion record;
- :py:mod:`~bundle.data.synthetic.shapes`: random 3-D shapes and their partial-volume occupancy;
- :py:mod:`~bundle.data.synthetic.synthesis`: inserting lesions into a host, one case at a time;
- :py:mod:`~bundle.data.synthetic.build`: a whole data set (hosts split, cases, ``datalist.json``);
- :py:mod:`~bundle.data.synthetic.gallery`: the PNG gallery of a data set's lesions.
"""
