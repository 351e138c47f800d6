"""The HaN-Seg raw dataset, as the download lays it out (tools only; the image never reads it).

* ``raw``: ``case_XX/case_XX_IMG_CT.nrrd``, ``case_XX_IMG_MR_T1.nrrd`` and one
  ``case_XX_OAR_<name>.seg.nrrd`` per annotated OAR: finding cases, merging their masks by name;
* ``oar_data``: ``OAR_data.csv`` in the download's own format, read and written by OAR name.

Training, the dataset check, evaluation and the phantom writer all go through these two
modules, so the layout and the table are read one way only.
"""
