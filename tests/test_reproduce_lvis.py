"""tools/reproduce_lvis.py: its checks name what is missing; its dry run trains and evaluates."""
from projects_lda.benchmark import reproduce_lvis

LOG = """\
[11/27 04:00:00 d2.evaluation.testing]: copypaste: Task: bbox
[11/27 04:00:00 d2.evaluation.testing]: copypaste: AP,AP50,AP75,APs,APm,APl,APr,APc,APf
[11/27 04:00:00 d2.evaluation.testing]: copypaste: 25.2000,40.1000,26.0000,18.0000,33.0000,40.0000,\
17.5000,24.0000,29.9000
[11/27 04:00:00 d2.evaluation.testing]: copypaste: Task: segm
[11/27 04:00:00 d2.evaluation.testing]: copypaste: AP,AP50,AP75,APs,APm,APl,APr,APc,APf
[11/27 04:00:00 d2.evaluation.testing]: copypaste: 24.4000,38.0000,25.6000,17.0000,31.0000,39.0000,\
18.2000,23.7000,27.9000
"""


def test_missing_data_and_gpus_are_named(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    missing = reproduce_lvis.check_requirements(64, str(tmp_path))
    text = "\n".join(missing)
    assert str(tmp_path / "lvis/lvis_v1_train.json") in text
    assert str(tmp_path / "coco/val2017") in text
    assert "--num-gpus 64 but" in text
    assert reproduce_lvis.main(["--num-gpus", "64", "--output", str(tmp_path / "out")]) == 2
    assert "Cannot start" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing started


def test_results_are_parsed_and_tabled_beside_the_paper(tmp_path):
    log = tmp_path / "log.txt"
    log.write_text("noise\n" + LOG.replace("24.4000", "1.0000") + LOG)  # the last block counts
    res = reproduce_lvis.parse_results(str(log))
    assert res["segm/AP"] == 24.4 and res["segm/APr"] == 18.2 and res["bbox/AP"] == 25.2
    table = reproduce_lvis.format_table({"lda": res})
    rows = table.splitlines()
    assert rows[1].split()[-5:] == ["24.4", "18.2", "23.7", "27.9", "25.2"]  # this run
    assert rows[2].startswith("lda (paper)") and rows[2].split()[-5:] == rows[1].split()[-5:]


# Extra options for both runs, which the script passes on to train_net.py: fewer and smaller
# ROIs and images than the dry run's (at 1,203 classes the mask head's cost grows with the number
# of ROIs and detections) so that the two runs take about a minute of CPU instead of four.
SMALL = ["INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MIN_SIZE_TEST", "128",
         "MODEL.RPN.POST_NMS_TOPK_TRAIN", "128", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "64",
         "MODEL.RPN.POST_NMS_TOPK_TEST", "50", "TEST.DETECTIONS_PER_IMAGE", "20"]


def test_dry_run_trains_evaluates_and_prints_the_table(tmp_path, capsys):
    measured = reproduce_lvis.main(["--dry-run", "--output", str(tmp_path), *SMALL])
    assert set(measured) == {"baseline", "lda"}
    for method, res in measured.items():
        assert {"segm/AP", "segm/APr", "bbox/AP"} <= set(res), method
        assert (tmp_path / method / "model_final.pth").is_file()
        config = (tmp_path / method / "config.yaml").read_text()
        assert "BATCH_SIZE_PER_IMAGE: 64" in config and "DETECTIONS_PER_IMAGE: 20" in config
    out = capsys.readouterr().out
    assert "DRY RUN" in out and "baseline (paper)" in out and "21.8" in out
    # run again: the finished runs are found, not trained again
    again = reproduce_lvis.main(["--dry-run", "--output", str(tmp_path)])
    assert again == measured
    assert "not trained again" in capsys.readouterr().out
