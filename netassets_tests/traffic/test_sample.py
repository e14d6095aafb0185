"""`netassets generate traffic` writes readable seed-format files in the landing layout, never over old ones."""

from netassets.cli import main
from netassets.traffic.readers import index_files, scan_landing


def test_generate_writes_landing_layout_and_refuses_to_overwrite(tmp_path, capsys):
    argv = ["generate", "traffic", "--out", str(tmp_path), "--sites", "s1,s2", "--days", "2",
            "--flows", "7", "--features", "5", "--max-packets", "9"]
    assert main(argv) == 0
    found = scan_landing(tmp_path)
    assert sorted(found) == [("2023-11-01", "s1"), ("2023-11-01", "s2"), ("2023-11-02", "s1"), ("2023-11-02", "s2")]
    index = index_files([f for files in found.values() for f in files], tmp_path)
    assert len(index.frame) == 28 and index.n_features == 5
    assert index.frame["n_packets"].max() <= 9
    assert main(argv) == 2 and "never overwritten" in capsys.readouterr().err
