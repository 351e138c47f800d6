"""The anatomy of a nominal head and neck in canonical millimetres (origin near the sella turcica).

The real profile adds the body a tall CT reaches below the neck (arms, rib cage, lungs, heart,
aorta, lower spine, liver, stomach): only below :data:`BODY_TOP`, never labelled, from a random
stream of its own, so the head and neck (and every simple case) stay exactly as they are."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import partial

import numpy as np
import numpy.typing as npt

from hanseg.labels import LABEL_IDS

from .errors import PhantomError
from .shapes import Clip, Difference, Ellipsoid, Shape, Structure, Tube, Union, Vec, _v, rotation_matrix
from .tissues import TID

#: Canonical point the head pose rotates about and the grids are centred on.
HEAD_CENTRE = _v(0.0, 8.0, 0.0)
#: Lowest canonical z any OAR reaches (cord / oesophagus), plus margin: the CT must reach it.
LOWEST_OAR_Z = -215.0
#: Lowest canonical z the MR must reach ("head and upper neck").
MR_LOWEST_Z = -100.0
#: Highest canonical z the body below the neck (real profile) may paint: under every OAR (the
#: lowest, the oesophagus and cord labels, end at -190), so the head and neck stay as they are.
BODY_TOP = -200.0
#: Half-width (mm) of the midline gap between a rib pair's ends (spine behind, sternum in front).
_RIB_GAP = 22.0
#: Spinal cord centre line; the canal, vertebrae and cord follow it (cervical lordosis).
_CORD_LINE = np.array([[0, 27, -36], [0, 27, -80], [0, 30, -130], [0, 35, -190], [0, 42, -340]], float)


def _cord_y(z: float) -> float:
    return float(np.interp(-z, -_CORD_LINE[:, 2], _CORD_LINE[:, 1]))


class _Builder:
    """Collects structures in painting order and draws the per-case jitter.

    OAR volumes scale with ``s`` (times a small per-OAR factor) while positions scale with
    ``s``: real organ volumes vary less than the cube of head size, and this keeps every
    volume inside its physiological range for the whole +-10 % range of ``s``.
    """

    def __init__(self, rng: np.random.Generator, s: float, missing: Iterable[str]):
        self.rng = rng
        self.oar_scale = s ** (-2.0 / 3.0)  # canonical radius factor: physical = s**(1/3)
        self.tube_scale = 1.0 / s  # canonical radius factor: physical radius = nominal
        self.missing = frozenset(missing)
        self.items: list[Structure] = []

    def off(self, mm: float = 1.0) -> Vec:
        """Random position jitter (canonical mm)."""
        return self.rng.uniform(-mm, mm, 3)

    def k_oar(self) -> float:
        """Radius factor of an ellipsoidal OAR: physical volume ~ s."""
        return self.oar_scale * self.rng.uniform(0.975, 1.025)

    def k_tube(self) -> float:
        """Radius factor of a tubular OAR: its length already grows with ``s``, so the
        cross-section stays nominal and the volume again grows like ``s``."""
        return self.tube_scale * self.rng.uniform(0.975, 1.025)

    def k_bg(self) -> float:
        return self.rng.uniform(0.97, 1.03)

    def add(self, name: str, shape: Shape, tissue: str | None, label: int | None = None) -> None:
        self.items.append(Structure(name, shape, None if tissue is None else TID[tissue], label))

    def oar(self, name: str, shape: Shape, tissue: str) -> None:
        """Paint an OAR; an OAR that is "not annotated" keeps its tissue but erases its label."""
        self.add(name, shape, tissue, 0 if name in self.missing else LABEL_IDS[name])

    def layers(self, name: str, shapes: Sequence[Shape], steps: Sequence[tuple[float, str]]) -> None:
        """Concentric layers of a union of shapes: ``(grow_mm, tissue)`` outermost first."""
        for d, tissue in steps:
            self.add(f"{name}:{tissue}", Union(tuple(sh.grown(d) for sh in shapes)), tissue)


def _ell(c: npt.ArrayLike, r: npt.ArrayLike, k: float = 1.0, rot: np.ndarray | None = None) -> Ellipsoid:
    return Ellipsoid(np.asarray(c, float), np.asarray(r, float) * k, rot)


def _tube(pts: npt.ArrayLike, r: float, k: float = 1.0, scale: npt.ArrayLike = (1, 1, 1)) -> Tube:
    return Tube(np.asarray(pts, float), r * k, np.asarray(scale, float))


def _arch(y0: float, curv: float, half_width: float, z: float, n: int = 9) -> np.ndarray:
    """Parabolic dental/mandibular arch ``y = y0 + curv * x**2`` at height ``z``."""
    x = np.linspace(-half_width, half_width, n)
    return np.stack([x, y0 + curv * x**2, np.full(n, z)], axis=1)


def _envelopes(b: _Builder) -> None:
    """Body outline: shoulders, neck, cranium, face; skin, subcutaneous fat, muscle core."""
    k = b.k_bg
    trunk = _tube([(0, 25, -270), (0, 25, -700)], 100, k(), (1.85, 1, 1))
    shoulders = Union((_ell((0, 25, -270), (185, 100, 110), k()), trunk))
    neck = _tube([(0, 18, -10), (0, 20, -100), (0, 24, -170), (0, 28, -260)], 60, k(), (1.05, 1, 1))
    cranium = _ell((0, 14, 38), (77, 98, 82), k())
    face = _ell((0, -5, -22), (72, 82, 50), k())
    chin = _ell((0, -52, -58), (34, 30, 22), k())
    jaw = _ell((0, -28, -66), (60, 50, 28), k())
    nose = _ell((0, -82, -8), (12, 14, 20), k())
    ears = [_ell((sx * 78, 15, -5), (5, 12, 24), k()) for sx in (1, -1)]
    core: list[Shape] = [shoulders, neck, cranium, face, chin, jaw]
    b.layers("body", [*core, nose, *ears], [(0.0, "SKIN")])
    b.layers("subcut", [*core, nose.grown(-2)], [(-2.0, "FAT")])
    b.layers("core", core[1:], [(-8.0, "MUSCLE")])
    b.layers("trunk", [shoulders], [(-14.0, "MUSCLE")])


def _trunk(b: _Builder) -> None:
    """Shoulder girdle at the bottom of a full field of view."""
    for sx in (1, -1):
        b.add("lung", _ell((sx * 62, 30, -268), (48, 55, 62), b.k_bg()), "LUNG")
        clav = _tube([(sx * 18, -38, -198), (sx * 70, -32, -200), (sx * 135, 10, -212)], 6.5, b.k_bg())
        b.layers("clavicle", [clav], [(0.0, "CORTICAL"), (-2.5, "TRABECULAR")])
        head = _ell((sx * 150, 20, -240), (24, 24, 24), b.k_bg())
        b.layers("humerus", [head], [(0.0, "CORTICAL"), (-3.0, "TRABECULAR")])
        scap = _ell((sx * 95, 85, -250), (45, 5, 50), b.k_bg(), rotation_matrix((0, 0, 1), sx * 20))
        b.layers("scapula", [scap], [(0.0, "CORTICAL"), (-2.0, "TRABECULAR")])
    b.layers("sternum", [_ell((0, -45, -225), (20, 7, 22), b.k_bg())], [(0.0, "CORTICAL"), (-2.0, "TRABECULAR")])


def _vertebra(b: _Builder, z: float, g: float, half_height: float = 7.0, disc_gap: float = 9.0) -> None:
    """One vertebra centred at height ``z`` (size factor ``g``): body, arch, spinous and
    transverse processes (cortical), trabecular body, and the disc above it."""
    yc = _cord_y(z)
    body = _ell((0, yc - 18, z), (9 * g, 8 * g, half_height), b.k_bg())
    arch = _ell((0, yc + 1, z), (15 * g, 13 * g, 5), b.k_bg())
    spinous = _ell((0, yc + 20, z - 4), (3.5, 11 * g, 4.5), b.k_bg())
    transverse = _ell((0, yc - 5, z), (24 * g, 5, 4.5), b.k_bg())
    b.layers("vertebra", [arch, spinous, transverse, body], [(0.0, "CORTICAL")])
    b.layers("vertebral_body", [body], [(-1.5, "TRABECULAR")])
    b.add("disc", _ell((0, yc - 18, z + disc_gap), (8.5 * g, 7.5 * g, 2.0)), "DISC")


def _spine(b: _Builder) -> None:
    """Atlas, vertebral bodies with discs, arches and processes, then the CSF-filled canal."""
    y1 = _cord_y(-42)
    b.layers("atlas", [_ell((0, y1 - 4, -42), (22, 22, 5), b.k_bg())], [(0.0, "CORTICAL"), (-2.0, "TRABECULAR")])
    b.layers("dens", [_ell((0, y1 - 16, -44), (5, 5, 10), b.k_bg())], [(0.0, "CORTICAL"), (-1.5, "TRABECULAR")])
    for lvl in range(15):  # C2 .. T6
        _vertebra(b, -58.0 - 18.0 * lvl, 1.0 + 0.03 * lvl)  # lower vertebrae are larger
    canal = _tube(np.vstack([[0, 27, -30], _CORD_LINE]), 7.5, b.k_bg(), (1.25, 1, 1))
    b.add("canal", canal, "CSF")


def _skull_and_brain(b: _Builder) -> None:
    """Calvarium and posterior fossa (cortical / diploe / cortical), CSF, grey and white
    matter, cerebellum and ventricles."""
    cal = _ell((0, 14, 38), (72, 93, 77), b.k_bg())
    fossa = _ell((0, 45, -10), (55, 40, 30), b.k_bg())
    both = [cal, fossa]
    steps = [(0.0, "CORTICAL"), (-2.0, "TRABECULAR"), (-5.0, "CORTICAL"), (-7.0, "CSF"), (-9.0, "GREY")]
    b.layers("skull", both, steps)
    b.add("white", cal.grown(-14.0), "WHITE")
    b.add("cerebellar_white", _ell((0, 47, -12), (26, 16, 12), b.k_bg()), "WHITE")
    for sx in (1, -1):
        b.add("lateral_ventricle", _ell((sx * 12, 10, 42), (6, 24, 10), b.k_bg()), "CSF")
    b.add("third_ventricle", _ell((0, 12, 25), (2, 10, 7)), "CSF")
    b.add("fourth_ventricle", _ell((0, 38, -14), (7, 4, 6)), "CSF")


def _skull_base_and_face(b: _Builder) -> None:
    """Skull base, temporal bones, maxilla, zygomas, orbits, paranasal sinuses, nasal cavity."""
    bone = [(0.0, "CORTICAL"), (-2.0, "TRABECULAR")]
    b.layers("skull_base", [_ell((0, -6, -20), (50, 36, 15), b.k_bg())], bone)
    b.add("clivus", _tube([(0, 2, -6), (0, 13, -36)], 6, b.k_bg()), "TRABECULAR")
    b.layers("maxilla", [_ell((0, -48, -20), (36, 26, 14), b.k_bg())], bone)
    for sx in (1, -1):
        zyg = _tube([(sx * 42, -58, -2), (sx * 57, -30, -10), (sx * 62, 0, -8)], 5, b.k_bg())
        b.layers("zygoma", [zyg], bone)
        rot = rotation_matrix((0, 0, 1), sx * 40)
        b.add("petrous", _ell((sx * 31, 20, -12), (20, 7.5, 8), b.k_bg(), rot), "DENSE")
        b.add("mastoid", _ell((sx * 50, 32, -20), (9, 11, 13), b.k_bg()), "TRABECULAR")
        b.add("ear_canal", _tube([(sx * 44, 16, -10), (sx * 80, 14, -7)], 3.5), "AIR_IN")
        b.add("maxillary_sinus", _ell((sx * 23, -50, -8), (11, 14, 11), b.k_bg()), "AIR_IN")
        b.add("orbit_wall", _ell((sx * 32, -50, 5), (19, 26, 18)), "CORTICAL")
        b.add("orbit_fat", _ell((sx * 32, -51, 5), (17, 25, 16)), "FAT")
    b.add("nasal_cavity", _ell((0, -62, -5), (9, 24, 15), b.k_bg()), "AIR_IN")
    b.add("ethmoid", _ell((0, -52, 10), (7, 15, 10), b.k_bg()), "AIR_IN")
    b.add("frontal_sinus", _ell((0, -74, 30), (12, 4, 8), b.k_bg()), "AIR_IN")
    b.add("sphenoid_sinus", _ell((0, -20, -14), (11, 9, 8), b.k_bg()), "AIR_IN")
    b.add("palate", _ell((0, -45, -24), (24, 24, 2.2), b.k_bg()), "CORTICAL")


AIRWAY = [(0, -22, -12), (0, -10, -30), (0, -7, -55), (0, -12, -78), (0, -18, -90)]
TRACHEA = [(0, -20, -118), (0, -18, -160), (0, -12, -330)]


def _neck_soft(b: _Builder) -> None:
    """Muscles, fat planes, veins, pharynx, hyoid and laryngo-tracheal cartilages."""
    for sx in (1, -1):
        b.add("masseter", _ell((sx * 57, -8, -40), (6, 15, 22), b.k_bg()), "MUSCLE")
        b.add("pterygoid", _ell((sx * 36, -2, -42), (6, 10, 17), b.k_bg()), "MUSCLE")
        b.add("parapharyngeal_fat", _ell((sx * 28, 8, -30), (6, 8, 14), b.k_bg()), "FAT")
        b.add("posterior_fat", _ell((sx * 40, 45, -110), (12, 14, 40), b.k_bg()), "FAT")
        scm = [(sx * 52, 38, -24), (sx * 48, 20, -80), (sx * 22, -32, -165)]
        b.add("sternocleidomastoid", _tube(scm, 8, b.k_bg()), "MUSCLE")
        jug = [(sx * 40, 22, -20), (sx * 40, 14, -80), (sx * 34, 0, -150), (sx * 30, -2, -190)]
        b.add("jugular", _tube(jug, 5, b.k_bg()), "BLOOD")
    b.add("pharynx_wall", _tube(AIRWAY, 7.5, 1.0, (1.6, 1, 1)), "MUSCLE")
    b.add("pharynx_air", _tube(AIRWAY, 5, 1.0, (1.8, 1, 1)), "AIR_IN")
    b.add("hyoid", _tube([(-20, -14, -80), (-10, -34, -80), (10, -34, -80), (20, -14, -80)], 3), "CORTICAL")
    shield = Difference(_ell((0, -22, -96), (19, 18, 18)), _ell((0, -22, -96), (16.5, 15.5, 18)))
    b.add("thyroid_cartilage", Clip(shield, axis=1, hi=-16), "CARTILAGE")
    b.add("cricoid", _ell((0, -19, -126), (13, 13, 6)), "CARTILAGE")
    b.add("trachea_wall", _tube(TRACHEA, 10.5), "CARTILAGE")
    b.add("trachea_air", _tube(TRACHEA, 8.5), "AIR_IN")


def _brain_oars(b: _Builder) -> None:
    """Brainstem (in its CSF cistern), chiasm, pituitary and optic nerves."""
    o = b.off()
    stem_line = np.array([(0, 16, 18), (0, 21, -8), (0, 27, -36)], float) + o
    stem = _tube(stem_line, 11, b.k_tube(), (1.15, 1, 1))
    b.add("prepontine_cistern", Clip(stem.grown(2.5), axis=2, lo=-40), "CSF")
    b.oar("Brainstem", Clip(stem, axis=2, lo=-36 + o[2]), "WHITE")
    o = b.off()
    b.add("suprasellar_cistern", _ell(_v(0, -6, 8) + o, (15, 11, 6)), "CSF")
    for sx, name in ((1, "OpticNrv_L"), (-1, "OpticNrv_R")):
        pts = np.array([(sx * 29, -47, 3.5), (sx * 20, -33, 5), (sx * 13, -19, 7), (sx * 7, -10, 8.5)]) + o
        b.oar(name, _tube(pts, 2.0, b.k_tube()), "NERVE")
    b.oar("OpticChiasm", _ell(_v(0, -8, 9) + o, (8, 5, 2.6), b.k_oar(), rotation_matrix((1, 0, 0), -20)), "NERVE")
    b.oar("Pituitary", _ell(_v(0, -4, -1) + b.off(0.5), (6.5, 5, 4), b.k_oar()), "GREY")


def _eye_oars(b: _Builder) -> None:
    """Lacrimal glands, globes (sclera + vitreous), anterior segments with the lens."""
    for sx, side in ((1, "L"), (-1, "R")):
        o = b.off()
        rot = rotation_matrix((0, 1, 0), sx * 25)
        b.oar(f"Glnd_Lacrimal_{side}", _ell(_v(sx * 45, -57, 17) + o, (8.5, 4.6, 4), b.k_oar(), rot), "GLAND_S")
        k = b.k_oar()
        centre = _v(sx * 31, -58, 4) + o
        b.oar(f"Eye_P{side}", _ell(centre, (12, 12, 12), k), "MUSCLE")  # sclera
        b.add("vitreous", _ell(centre, (11, 11, 11), k), "VITREOUS")
        b.oar(f"Eye_A{side}", _ell(centre + _v(0, -9.9 * k, 0), (7.5, 3.8, 7.5), b.k_oar()), "VITREOUS")
        b.add("lens", _ell(centre + _v(0, -6.5 * k, 0), (4.5, 2, 4.5), k), "LENS")
        b.oar(f"Cochlea_{side}", _ell(_v(sx * 29, 17, -11) + b.off(0.7), (3.2, 2.8, 2.4), b.k_oar()), "FLUID")


def _face_oars(b: _Builder) -> None:
    """Parotids, submandibular glands, oral cavity, mandible with teeth, buccal mucosa, lips."""
    for sx, side in ((1, "L"), (-1, "R")):
        b.oar(f"Parotid_{side}", _ell(_v(sx * 53.5, 22, -30) + b.off(), (12, 21.5, 30), b.k_oar()), "GLAND_P")
        b.oar(f"Glnd_Submand_{side}", _ell(_v(sx * 28, -12, -76) + b.off(), (11.8, 15, 11.3), b.k_oar()), "GLAND_S")
    o = b.off()
    b.oar("Cavity_Oral", _ell(_v(0, -42, -45) + o, (28, 34.5, 17.5), b.k_oar()), "MUSCLE")
    b.add("oral_air", _ell(_v(0, -45, -29) + o, (14, 18, 1.6)), "AIR_IN")
    b.add("upper_teeth", _tube(_arch(-64, 0.03, 30, -31, 7) + o, 3.5, 1.0, (1, 1, 1.5)), "TEETH", label=0)
    _mandible(b, o)
    k = b.k_oar()
    buccal = Union(tuple(_ell(_v(sx * 36, -45, -36) + o, (4, 22, 11), k) for sx in (1, -1)))
    b.oar("BuccalMucosa", buccal, "MUSCLE")
    b.oar("Lips", _ell(_v(0, -80, -37) + o, (24, 7, 13), b.k_oar()), "MUSCLE")


def _mandible(b: _Builder, o: Vec) -> None:
    """U-shaped body plus two rami (cortical shell, trabecular core) and the lower teeth."""
    k = b.k_tube()
    body = _tube(_arch(-65, 0.0304, 48, -57) + o, 6, k, (1, 1, 2.5))
    rami = [_tube(np.array([(sx * 48, 5, -60), (sx * 51, 8, -8)]) + o, 4.5, k, (1, 3, 1)) for sx in (1, -1)]
    bone = Union((body, *rami))
    b.oar("Bone_Mandible", bone, "CORTICAL")
    b.add("mandible_marrow", bone.grown(-2.5), "TRABECULAR")
    teeth = _tube(_arch(-63, 0.031, 28, -41, 7) + o, 3.5, k, (1, 1, 1.5))
    b.oar("Bone_Mandible", teeth, "TEETH")


def _neck_oars(b: _Builder) -> None:
    """Larynx (supraglottic, glottis, arytenoids), cricopharyngeus, oesophagus, thyroid,
    carotids and the spinal cord."""
    o = b.off()
    b.oar("Larynx_SG", _ell(_v(0, -22, -96) + o, (15.5, 15.5, 16), b.k_oar()), "MUSCLE")
    b.add("laryngeal_vestibule", _ell(_v(0, -20, -96) + o, (5, 7, 12)), "AIR_IN")
    b.oar("Glottis", _ell(_v(0, -22, -116) + o, (11, 10.5, 4.8), b.k_oar()), "MUSCLE")
    b.add("rima_glottidis", _ell(_v(0, -22, -116) + o, (2, 7, 3.2)), "AIR_IN")
    k = b.k_oar()
    b.oar("Arytenoid", Union(tuple(_ell(_v(sx * 6, -11, -108) + o, (4, 4.5, 6.5), k) for sx in (1, -1))), "CARTILAGE")
    b.oar("Cricopharyngeus", _ell(_v(0, -2, -124) + o, (11, 6.5, 6.5), b.k_oar()), "MUSCLE")
    oes = np.array([(0, -1, -131), (0, 0, -160), (0, 2, -190)]) + o
    b.oar("Esophagus_S", _tube(oes, 1.0, b.k_tube(), (9.5, 6.5, 1)), "MUSCLE")
    b.add("oesophageal_air", _tube(oes, 0.25, 1.0, (9, 6, 1)), "AIR_IN")
    trachea = _tube(TRACHEA, 11.0)
    k = b.k_oar()
    lobes = [_ell(_v(sx * 17, -13, -142) + o, (8, 10, 22), k) for sx in (1, -1)]
    isthmus = _ell(_v(0, -33, -132) + o, (10, 2.8, 5), k)
    b.oar("Glnd_Thyroid", Difference(Union((*lobes, isthmus)), trachea), "THYROID")
    for sx, side in ((1, "L"), (-1, "R")):
        pts = np.array(
            [(24, -6, -185), (27, -6, -150), (28, 2, -110), (30, 12, -70), (30, 16, -30), (28, 14, -15)], float
        )
        pts[:, 0] *= sx
        b.oar(f"A_Carotid_{side}", _tube(pts + b.off(), 3.0, b.k_tube()), "BLOOD")
    cord = _tube(_CORD_LINE + b.off(0.5) * (1, 1, 0), 4.5, b.k_tube(), (1.3, 1, 1))
    b.add("cord_below_annotation", Clip(cord, axis=2, hi=-190), "CORD")
    b.oar("SpinalCord", Clip(cord, axis=2, lo=-190, hi=-36), "CORD")


# =========================================================================================
# Below the neck (real profile only): the body a tall CT reaches, without any label.
# =========================================================================================


class _BelowNeck(_Builder):
    """Adds to another builder's list with its own random stream (so the head-and-neck draws,
    hence every simple case, stay as they were), clips every shape below :data:`BODY_TOP` and
    refuses labels: nothing below the existing OARs is annotated, as in HaN-Seg."""

    def __init__(self, rng: np.random.Generator, s: float, items: list[Structure]):
        super().__init__(rng, s, ())
        self.items = items

    def add(self, name: str, shape: Shape, tissue: str | None, label: int | None = None) -> None:
        if label is not None:
            raise PhantomError(f"{name}: structures below the neck carry no label (nothing there is annotated)")
        super().add(name, Clip(shape, axis=2, hi=BODY_TOP), tissue)


def _arms(b: _BelowNeck) -> None:
    """Upper arms hanging beside the trunk (skin, fat, muscle), painted before the body
    outline so that the trunk's own skin separates arm from chest where they touch."""
    for sx in (1, -1):
        arm = _tube([(sx * 195, 22, -262), (sx * 214, 26, -330), (sx * 224, 28, -545)], 38, b.k_bg())
        b.layers("arm", [arm], [(0.0, "SKIN"), (-2.0, "FAT"), (-9.0, "MUSCLE")])


def _rib(b: _BelowNeck, z_back: float, half_width: float, half_depth: float) -> None:
    """One pair of ribs: a ring tilted 22 degrees (the front lower than the back, whose top is
    at ``z_back``), a flat elliptic disc minus a smaller one, cortex around marrow, cut at
    both ends of the midline where the spine and the sternum are."""
    tilt = 22.0
    rot = rotation_matrix((1, 0, 0), -tilt)  # local y runs posterior *and* up
    k = b.k_bg()
    centre = _v(0, 24, z_back - half_depth * k * np.sin(np.radians(tilt)))
    outer, inner = np.array([half_width, half_depth, 5.0]), np.array([half_width - 9, half_depth - 9, 6.0])
    for grow, tissue in ((0.0, "CORTICAL"), (-2.0, "TRABECULAR")):
        ring = Difference(
            _ell(centre, outer * (k, k, 1) + grow, rot=rot), _ell(centre, inner * (k, k, 1) - grow, rot=rot)
        )
        for side in (Clip(ring, axis=0, lo=_RIB_GAP), Clip(ring, axis=0, hi=-_RIB_GAP)):
            b.add(f"rib:{tissue}", side, tissue)


def _chest_organs(b: _BelowNeck) -> None:
    """Lungs, mediastinal fat, heart in its fat, aorta, main bronchi, lower oesophagus."""
    for sx in (1, -1):
        b.add("lung", _ell((sx * 70, 32, -345), (62, 55, 135), b.k_bg()), "LUNG")
    b.add("mediastinum", _ell((0, -10, -300), (32, 40, 90), b.k_bg()), "FAT")
    heart = _ell((18, -2, -385), (55, 40, 58), b.k_bg(), rotation_matrix((0, 0, 1), 25))
    b.layers("heart", [heart], [(3.0, "FAT"), (0.0, "BLOOD")])
    aorta = [(8, -18, -345), (5, -12, -280), (10, 0, -262), (22, 14, -280), (28, 10, -335), (28, 8, -560)]
    b.add("aorta", _tube(aorta, 12, b.k_bg()), "BLOOD")
    for sx in (1, -1):
        b.add("bronchus", _tube([(0, -12, -328), (sx * 38, -2, -352), (sx * 60, 10, -378)], 6), "AIR_IN")
    oesophagus = [(0, 3, -195), (0, 8, -330), (8, 5, -470)]
    b.add("oesophagus_below", _tube(oesophagus, 1.0, 1.0, (9, 6, 1)), "MUSCLE")
    b.add("oesophagus_below_air", _tube(oesophagus, 0.25, 1.0, (8, 5, 1)), "AIR_IN")


def _upper_abdomen(b: _BelowNeck) -> None:
    """Liver under the right dome of the diaphragm and the stomach (wall, air bubble) under
    the left, both painted over the lung bases; the spine, canal and cord carry on down."""
    b.add("liver", _ell((-55, 15, -500), (100, 72, 85), b.k_bg()), "DISC")  # ~85 HU, mid-grey T1
    b.add("stomach", _ell((60, -5, -490), (45, 35, 40), b.k_bg()), "MUSCLE")
    b.add("stomach_air", _ell((60, -15, -465), (28, 20, 14), b.k_bg()), "AIR_IN")
    for lvl in range(15, 28):  # T10 .. L4 at 22 mm spacing: taller bodies, thicker discs
        _vertebra(b, -310.0 - 22.0 * (lvl - 14), 1.0 + 0.03 * lvl, half_height=8.5, disc_gap=11.0)
    b.add("canal_below", _tube([(0, 42, -330), (0, 44, -620)], 7.5, b.k_bg(), (1.25, 1, 1)), "CSF")
    b.add("cord_below", _tube([(0, 42, -335), (0, 44, -590)], 4.5, 1.0, (1.3, 1, 1)), "CORD")


def _chest_wall(b: _BelowNeck) -> None:
    """Humeral shafts, ten rib pairs (the cage wider and deeper downwards) and the sternal
    body, painted over the lungs, heart and liver where they meet them."""
    bone = [(0.0, "CORTICAL"), (-3.0, "TRABECULAR")]
    for sx in (1, -1):
        shaft = _tube([(sx * 160, 20, -255), (sx * 205, 24, -330), (sx * 222, 28, -530)], 11, b.k_bg())
        b.layers("humerus_shaft", [shaft], bone)
    for i in range(10):
        t = np.sin(min(1.0, i / 6.0) * np.pi / 2)  # the cage widens fast, then stays wide
        _rib(b, -222.0 - 24.0 * i, 90.0 + 60.0 * t, 58.0 + 20.0 * t)
    sternum = _tube([(0, -48, -246), (0, -52, -385)], 5, b.k_bg(), (3.2, 1, 1))
    b.layers("sternal_body", [sternum], [(0.0, "CORTICAL"), (-1.5, "TRABECULAR")])


def build_anatomy(
    rng: np.random.Generator, s: float, missing: Iterable[str], body_rng: np.random.Generator | None = None
) -> list[Structure]:
    """All structures of one case, in painting order (later ones overwrite earlier ones).

    With ``body_rng`` (the real profile) the body goes on below the neck: arms before the
    body outline, the chest and upper abdomen after the shoulder girdle and before the spine,
    airway and neck OARs, which are painted over them where they meet. Without it the list
    is exactly the head-and-neck anatomy (the simple profile)."""
    b = _Builder(rng, s, missing)
    low = None if body_rng is None else _BelowNeck(body_rng, s, b.items)
    parts: list[Callable[[], None]] = [
        partial(part, b)
        for part in (
            _envelopes,
            _trunk,
            _spine,
            _skull_and_brain,
            _skull_base_and_face,
            _neck_soft,
            _brain_oars,
            _eye_oars,
            _face_oars,
            _neck_oars,
        )
    ]
    if low is not None:
        parts[2:2] = [partial(part, low) for part in (_chest_organs, _upper_abdomen, _chest_wall)]
        parts.insert(0, partial(_arms, low))
    for paint in parts:
        paint()
    return b.items
