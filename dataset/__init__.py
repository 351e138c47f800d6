"""The HaN-Seg raw dataset, as the download lays it out (tools only; the image never reads it).

``raw``: ``case_XX/case_XX_IMG_CT.nrrd``, ``case_XX_IMG_MR_T1.nrrd`` and one
``case_XX_OAR_<name>.seg.nrrd`` per annotated OAR: finding cases, merging their masks by name.
Training, evaluation and the phantom writer all read the layout through it.
"""
