from benchmarks.dicom_path import SEGMENTED, table


def test_the_segmentation_seconds_are_read_from_the_log_line_inference_writes():
    log = "2026-12-01 INFO hanseg.inference: segmented in 24.5 s\n... segmented in 3 s"
    assert SEGMENTED.findall(log) == ["24.5", "3"]


def test_the_table_has_a_row_per_layout_and_the_summary():
    runs = {
        "mha": {"seconds": 60.0, "segmentation_seconds": 50.0, "peak_rss_gib": 1.2, "exit_code": 0},
        "dicom": {"seconds": 75.0, "segmentation_seconds": 50.5, "peak_rss_gib": 1.4, "exit_code": 0},
    }
    text = table({"runs": runs, "summary": {"seconds_ratio_dicom_over_mha": 1.25}})
    assert "| mha | 60.0 | 50.0 | 1.2 | 0 |" in text and "| dicom | 75.0 | 50.5 | 1.4 | 0 |" in text
    assert text.endswith('{"seconds_ratio_dicom_over_mha": 1.25}')
