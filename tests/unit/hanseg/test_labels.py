from hanseg import labels

EXPECTED = {
    1: "A_Carotid_L",
    2: "A_Carotid_R",
    3: "Arytenoid",
    4: "Bone_Mandible",
    5: "Brainstem",
    6: "BuccalMucosa",
    7: "Cavity_Oral",
    8: "Cochlea_L",
    9: "Cochlea_R",
    10: "Cricopharyngeus",
    11: "Esophagus_S",
    12: "Eye_AL",
    13: "Eye_AR",
    14: "Eye_PL",
    15: "Eye_PR",
    16: "Glnd_Lacrimal_L",
    17: "Glnd_Lacrimal_R",
    18: "Glnd_Submand_L",
    19: "Glnd_Submand_R",
    20: "Glnd_Thyroid",
    21: "Glottis",
    22: "Larynx_SG",
    23: "Lips",
    24: "OpticChiasm",
    25: "OpticNrv_L",
    26: "OpticNrv_R",
    27: "Parotid_L",
    28: "Parotid_R",
    29: "Pituitary",
    30: "SpinalCord",
}


def test_every_id_is_the_challenges():
    assert {i: labels.LABEL_NAMES[i] for i in range(1, 31)} == EXPECTED
    assert labels.LABEL_NAMES[0] == "background"
    assert all(labels.LABEL_IDS[n] == i for i, n in EXPECTED.items())
    assert labels.NUM_CLASSES == 31


def test_ids_are_alphabetical_file_name_order():
    assert list(labels.OAR_NAMES) == sorted(labels.OAR_NAMES)


def test_left_right_pairs():
    assert set(labels.LR_PAIRS) == {
        ("A_Carotid_L", "A_Carotid_R"),
        ("Cochlea_L", "Cochlea_R"),
        ("Eye_AL", "Eye_AR"),
        ("Eye_PL", "Eye_PR"),
        ("Glnd_Lacrimal_L", "Glnd_Lacrimal_R"),
        ("Glnd_Submand_L", "Glnd_Submand_R"),
        ("OpticNrv_L", "OpticNrv_R"),
        ("Parotid_L", "Parotid_R"),
    }


def test_swap_table_is_an_involution_that_swaps_pairs_only():
    t = labels.lr_swap_table()
    assert [t[t[i]] for i in range(31)] == list(range(31))
    assert t[1] == 2 and t[27] == 28 and t[12] == 13 and t[14] == 15
    assert sum(t[i] != i for i in range(31)) == 16
    assert t[0] == 0 and t[5] == 5 and t[30] == 30


def test_oar_file_name():
    assert labels.oar_file_name("case_01", "Brainstem") == "case_01_OAR_Brainstem.seg.nrrd"
