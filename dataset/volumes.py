"""Typical adult volumes of the 30 HaN-Seg OARs, in mL, for flagging masks worth a second look.

Where the numbers come from: rough adult ranges for CT contours of these organs as the
head-and-neck literature reports them, recalled, not transcribed from one table: the consensus
delineation guidelines (Brouwer et al., Radiother. Oncol. 2015, doi 10.1016/j.radonc.2015.07.041)
for what each structure spans, volumes reported for public head-and-neck OAR sets (e.g. PDDCA,
Raudaschl et al., Med. Phys. 2017, doi 10.1002/mp.12197) and anatomy texts for the small organs
(globe about 7 mL, lens about 0.2 mL, cochlea about 0.1 mL, pituitary about 0.6 mL, thyroid
10–25 mL). Each range was then widened by hand, typically to half the smallest and twice the
largest typical value. Check a range against your own data before reading more into it.

They are deliberately generous: a volume outside its range means "look at this mask" (a wrong
file, a contour on another organ, a mask in voxels of the wrong size, a stray blob), never
"this contour is wrong". Tubular structures (carotids, oesophagus, spinal cord) depend on how
far the contour was drawn along them, so their ranges are the widest. Real datasets drift (the
HaN-Seg cochleae roughly double in volume between cases 01–20 and 21–42, both halves inside
the range): ``training.check_data`` compares cases with each other for that.
"""

from __future__ import annotations

#: OAR name → (lowest, highest) typical adult volume in mL. Pure data; see the module docstring.
TYPICAL_VOLUME_ML: dict[str, tuple[float, float]] = {
    "A_Carotid_L": (1.0, 25.0),
    "A_Carotid_R": (1.0, 25.0),
    "Arytenoid": (0.1, 6.0),
    "Bone_Mandible": (25.0, 150.0),
    "Brainstem": (10.0, 60.0),
    "BuccalMucosa": (2.0, 60.0),
    "Cavity_Oral": (15.0, 250.0),
    "Cochlea_L": (0.01, 1.0),
    "Cochlea_R": (0.01, 1.0),
    "Cricopharyngeus": (0.2, 15.0),
    "Esophagus_S": (1.0, 40.0),
    "Eye_AL": (0.05, 3.0),
    "Eye_AR": (0.05, 3.0),
    "Eye_PL": (3.0, 15.0),
    "Eye_PR": (3.0, 15.0),
    "Glnd_Lacrimal_L": (0.1, 4.0),
    "Glnd_Lacrimal_R": (0.1, 4.0),
    "Glnd_Submand_L": (2.0, 30.0),
    "Glnd_Submand_R": (2.0, 30.0),
    "Glnd_Thyroid": (3.0, 60.0),
    "Glottis": (0.3, 15.0),
    "Larynx_SG": (1.0, 50.0),
    "Lips": (2.0, 40.0),
    "OpticChiasm": (0.05, 3.0),
    "OpticNrv_L": (0.05, 3.0),
    "OpticNrv_R": (0.05, 3.0),
    "Parotid_L": (5.0, 80.0),
    "Parotid_R": (5.0, 80.0),
    "Pituitary": (0.05, 3.0),
    "SpinalCord": (1.0, 80.0),
}
